"""The shop app on the alias "views", every other app on "default" (settings TXPROJ_VIEWS_DB)."""


class ShopRouter:
    def db_for_read(self, model, **hints):
        return "views" if model._meta.app_label == "shop" else None

    def db_for_write(self, model, **hints):
        return "views" if model._meta.app_label == "shop" else None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == ("views" if app_label == "shop" else "default")
