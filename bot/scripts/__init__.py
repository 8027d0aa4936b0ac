"""Survey scripts: loading and validating them, lint, SMS length, the template sandbox."""
