"""The one command-line pattern of every `python -m stress_jax.<tool>` entry point.

Each tool defines its flags at module level on its own `FlagValues` (so importing
two tools in one process, as the tests do, defines no flag twice, and `main()`
works when imported once the tool's FLAGS are parsed), then ends with

  if __name__ == "__main__":
    cli.run(main, FLAGS)

`run` parses the tool's flags together with absl's own (--verbosity, --help) and
maps a `UserError` (bad input the user can fix) to one line on stderr and exit
status 2; `--verbosity=1` shows the traceback instead. The `define_*` helpers
define the flags several tools share, and `flag_arguments` hands a tool's flags to
the function whose parameters they name.
"""

from __future__ import annotations

import errno
import inspect
import logging as pylogging
import os
import pathlib
import re
import sys

from absl import app, flags

from stress_jax.errors import ConfigError, UserError  # noqa: F401 (re-exported: cli.ConfigError)

# The define_* helpers below define flags for the tool that calls them: absl then files
# each flag under that tool's module (its --help lists it), not under this one.
flags.disclaim_key_flags()

USER_ERROR_EXIT_CODE = 2
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT
CHECKPOINT_HELP = (
  "reported (the one the run reported: train.report_checkpoint), best (chosen on "
  "validation subjects), latest or a step number."
)


def one_line(error: BaseException) -> str:
  """An exception's message folded to one line."""
  text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
  return text or type(error).__name__


def program_name() -> str:
  name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "stress_jax"
  if name == "__main__.py" or name.endswith(".py"):
    name = name.removesuffix(".py")
  return name


def verbose() -> bool:
  """--verbosity=1 (or higher) was given: keep tracebacks."""
  try:
    return flags.FLAGS["verbosity"].present and flags.FLAGS.verbosity >= 1
  except (KeyError, flags.UnparsedFlagAccessError):
    return False


def guarded(main, name: str | None = None):
  """`main` with UserError (and its subclasses) turned into one line + exit status 2."""

  def wrapper(argv):
    try:
      return main(argv)
    except UserError as error:
      if verbose():
        raise
      print(f"{name or program_name()}: error: {one_line(error)}", file=sys.stderr, flush=True)
      sys.exit(USER_ERROR_EXIT_CODE)
    except OSError as error:
      # A full disk is the user's to fix: say where, not how deep in a library it hit.
      if error.errno != errno.ENOSPC or verbose():
        raise
      where = f" writing {error.filename}" if error.filename else ""
      print(
        f"{name or program_name()}: error: no space left on device{where}",
        file=sys.stderr,
        flush=True,
      )
      sys.exit(USER_ERROR_EXIT_CODE)
    except KeyboardInterrupt:
      # Ctrl-C outside the training loop (which saves a checkpoint and exits itself).
      if verbose():
        raise
      print(f"{name or program_name()}: interrupted", file=sys.stderr, flush=True)
      sys.exit(INTERRUPTED_EXIT_CODE)

  return wrapper


def shipped_config(path: str) -> str:
  """`path` as given where it exists from the working directory; else, for a config this
  repository ships (stress_jax/configs/...), the copy beside this package, so the tools
  run from any directory."""
  if os.path.exists(path.split(":", 1)[0]):
    return path
  beside = pathlib.Path(__file__).resolve().parents[1] / path
  return str(beside) if beside.is_file() else path


def define_config_flag(flag_values: flags.FlagValues, default: str = "stress_jax/configs/demo.py"):
  """The --config flag (a get_config() module, overridable by --config.x) of a tool."""
  from ml_collections import config_flags

  return config_flags.DEFINE_config_file(
    "config",
    shipped_config(default),
    "Config file (a get_config() module).",
    lock_config=True,
    flag_values=flag_values,
  )


# Flags several tools share: each name has one type and default everywhere; the help
# says what it means to the tool at hand.


def define_workdir(flag_values, help: str, default: str | None = None, required: bool = False):
  return flags.DEFINE_string("workdir", default, help, flag_values=flag_values, required=required)


def define_data_dir(flag_values: flags.FlagValues, help: str):
  return flags.DEFINE_string("data_dir", None, help, flag_values=flag_values)


def define_output(flag_values, help: str, default: str | None = None, required: bool = False):
  return flags.DEFINE_string("output", default, help, flag_values=flag_values, required=required)


def define_overwrite(flag_values: flags.FlagValues, help: str):
  return flags.DEFINE_boolean("overwrite", False, help, flag_values=flag_values)


def define_num_pictures(flag_values: flags.FlagValues, default: int, help: str):
  return flags.DEFINE_integer("num_pictures", default, help, flag_values=flag_values)


def define_trained_model(
  flag_values: flags.FlagValues,
  workdir_help: str = "A training workdir (holds config.json).",
  optional: bool = False,
):
  """--workdir (a training run; required unless `optional`) and --checkpoint (which of its)."""
  workdir = define_workdir(flag_values, workdir_help, required=not optional)
  checkpoint_help = f"With --workdir: {CHECKPOINT_HELP}" if optional else CHECKPOINT_HELP
  checkpoint = flags.DEFINE_string(
    "checkpoint", "reported", checkpoint_help, flag_values=flag_values
  )
  return workdir, checkpoint


def define_fold_flags(flag_values: flags.FlagValues, gathered_into: str):
  """--fold (one fold of the protocol) and --collect (only tabulate the finished folds)."""
  fold = flags.DEFINE_integer(
    "fold", -1, "Run only this fold (0-based); -1 = every fold.", flag_values=flag_values
  )
  collect_help = f"Only gather finished folds into the {gathered_into}."
  return fold, flags.DEFINE_boolean("collect", False, collect_help, flag_values=flag_values)


def flag_arguments(flag_values: flags.FlagValues, function) -> dict:
  """The tool's own flags that `function` takes as parameters of the same name, with values.

  Only flags the tool defined count: `run` also files absl's (--verbosity, ...) in
  `flag_values`, and those are no function's business.
  """
  own = {flag.name for defined in flag_values.flags_by_module_dict().values() for flag in defined}
  parameters = inspect.signature(function).parameters
  return {name: flag_values[name].value for name in parameters if name in own}


def _config_field_error(error: BaseException, argv) -> str | None:
  """An unknown --config.a.b override, as ml_collections reports it, in one line."""
  text = str(error)
  suggestion = re.search(r'Did you mean "(\w+)" instead of "(\w+)"', text)
  unknown = suggestion.group(2) if suggestion else None
  if unknown is None:
    found = re.match(r"""^\W*'(\w+)'\W*$""", text)
    unknown = found.group(1) if found else None
  if unknown is None:
    return None
  for arg in argv[1:]:
    name = arg.lstrip("-").split("=", 1)[0]
    parts = name.split(".")
    if len(parts) > 1 and unknown in parts[1:]:
      field = ".".join(parts[1:])
      line = f"unknown config field {field} (--{name})"
      if suggestion:
        fixed = [suggestion.group(1) if part == unknown else part for part in parts[1:]]
        line += f"; did you mean {'.'.join(fixed)}?"
      return line
  return None


def _config_file_argv(argv) -> list:
  """argv with a shipped --config path made absolute when it is not found from here; a
  --config file that is nowhere is one line (ml_collections would defer the failure to
  the config's first use, with a traceback)."""
  argv = list(argv)
  for index, arg in enumerate(argv[1:], start=1):
    if arg.startswith("--config="):
      path = shipped_config(arg.split("=", 1)[1])
      if not os.path.exists(path.split(":", 1)[0]):
        raise flags.Error(f"config file {path} does not exist")
      argv[index] = f"--config={path}"
  return argv


def flags_parser(flag_values: flags.FlagValues, name: str | None = None):
  """absl's flags_parser for `flag_values`: a flag that does not parse is one line, exit 2.

  ml_collections raises a bare AttributeError (with a suggestion) for a misspelt
  --config.field; it is caught here too, as nothing else parses flags.
  """

  def parse(argv):
    try:
      rest = flag_values(_config_file_argv(argv))
    except flags.Error as error:
      line = one_line(error)
    except (AttributeError, KeyError, TypeError, ValueError) as error:
      line = _config_field_error(error, argv) or f"bad flag: {one_line(error)}"
    else:
      flags.FLAGS.mark_as_parsed()
      return rest
    print(f"{name or program_name()}: error: {line}", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT_CODE)

  return parse


def unexpected_arguments(argv) -> None:
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")


class _DropNoise(pylogging.Filter):
  """Library log lines that are not about the user's run."""

  def filter(self, record: pylogging.LogRecord) -> bool:
    if record.levelno >= pylogging.ERROR and f"{os.sep}orbax{os.sep}" in record.pathname:
      # A failed background save (a full disk) is logged with its traceback by each of
      # orbax's threads, then raised again in the main thread: reported there, once.
      return False
    message = record.getMessage()
    # The second: TFDS probing a dataset that is not built, which the error then says.
    return "OpenCV is not installed" not in message and "has no dataset_info.json" not in message


def quiet_logging(level: str = "error") -> None:
  """orbax and TFDS log every file operation; keep the console for the user unless asked."""
  from absl import logging

  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(getattr(logging, level.upper()))
    pylogging.getLogger("absl").addFilter(_DropNoise())


def run(main, flag_values: flags.FlagValues, name: str | None = None) -> None:
  """absl's app.run over the tool's own flags plus absl's, with the error path above."""
  app.define_help_flags()
  _share_flags(flag_values)
  app.run(guarded(main, name), flags_parser=flags_parser(flag_values, name))


def _share_flags(flag_values: flags.FlagValues) -> None:
  """Tool flags into absl's registry (--help lists them); absl's (--verbosity) into the tool's."""
  for module, module_flags in flag_values.flags_by_module_dict().items():
    for flag in module_flags:
      if flag.name not in flags.FLAGS:
        flags.FLAGS[flag.name] = flag
        flags.FLAGS.register_flag_by_module(module, flag)
  for flag_name in list(flags.FLAGS):
    flag = flags.FLAGS[flag_name]  # registering a flag registers its short name too
    if flag.name not in flag_values and flag_name == flag.name:
      flag_values[flag.name] = flag


def run_in_process(main, flag_values: flags.FlagValues, argv, name: str) -> int:
  """What `run` does, minus absl's app wrapper: parse, call, map errors; returns the status.

  For callers that already run inside Python (the tests): no interpreter to start.
  """
  # Not _share_flags: in one process the registry gathers every tool's flags, and
  # another tool's required flags would then be required here too.
  flag_values.unparse_flags()
  for flag_name in [n for n in flag_values if "." in n]:
    # A config flag's --config.x overrides, defined by the last parse: defined again now.
    delattr(flag_values, flag_name)
  argv = [name, *map(str, argv)]
  # ml_collections reads a config flag's --config.x overrides from sys.argv itself.
  saved, sys.argv = sys.argv, argv
  try:
    guarded(main, name)(flags_parser(flag_values, name)(argv))
  except SystemExit as exit:
    return exit.code if isinstance(exit.code, int) else 1
  finally:
    sys.argv = saved
  return 0
