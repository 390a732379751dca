"""The metadata database: models, the Library object that owns it, and the filter language."""
