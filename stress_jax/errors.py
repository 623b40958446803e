"""The project's user-facing error types, on a floor of their own.

`cli` turns them into one stderr line and exit status 2; the models raise them for bad
config values, so they live where the models can import them without pulling in absl
or anything else of the project.
"""


class UserError(Exception):
  """Something the user asked for or gave cannot work; the message is one line naming it."""


class ConfigError(UserError, ValueError):
  """A config value that cannot work (an unknown mode, a negative weight, a bad pairing)."""
