"""PostgreSQL views and materialized views as Django models, with a C core over libpq."""

__version__ = "0.2.0"
