"""Storage: the models, the named statuses, the unit of work, migrations."""
