class DBRouter:
    """weather_db holds the multidbtest app only; schema_db the schemadbtest app only; the other
    apps live on default, also reached as server_binding (the same database)."""

    owned = {"multidbtest": "weather_db", "schemadbtest": "schema_db"}

    def db_for_read(self, model, **hints):
        return self.owned.get(model._meta.app_label)

    def db_for_write(self, model, **hints):
        return self.owned.get(model._meta.app_label)

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        owner = self.owned.get(app_label)
        if owner:
            return db == owner
        return db in ("default", "server_binding")
