"""The options of every command, defined once: field types, the five command schemas, YAML loading and error wording. May import errors, files and modeling.folder."""
