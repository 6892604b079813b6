"""Independent recomputation of the KPI catalogue from the raw event log (DuckDB SQL).

``recompute.recompute`` rebuilds every exported sample from the records of the events topic,
working only from the README's "Event model" and "Metric definitions"; the SQL lives in
``audit/sql/*.sql`` (base views first, then one view per metric family).
"""
