"""Survey scripts: loading and validating them, SMS length, the template sandbox, the folder of
scripts. `involve lint`, which also reads campaigns and channels, is `bot.cycle.lint`."""
