"""The shared-flag helpers and flag_arguments of stress_jax/cli.py."""

from __future__ import annotations

from absl import flags

from stress_jax import cli


def _tool_flags() -> flags.FlagValues:
  values = flags.FlagValues()
  cli.define_trained_model(values, optional=True)
  cli.define_output(values, "Where it goes.", default="out")
  cli.define_overwrite(values, "Replace it.")
  flags.DEFINE_integer("batch_size", 8, "Clips per call.", flag_values=values)
  return values


def test_shared_flags_belong_to_the_tool_that_defines_them():
  values = _tool_flags()
  # The tool's --help lists the flags filed under its module.
  assert {name for name, _ in values.flags_by_module_dict().items()} == {__name__}
  assert values["checkpoint"].help == f"With --workdir: {cli.CHECKPOINT_HELP}"
  assert values["checkpoint"].default == "reported" and values["overwrite"].default is False
  required = flags.FlagValues()
  cli.define_trained_model(required)
  assert required["checkpoint"].help == cli.CHECKPOINT_HELP
  required(["tool", "--workdir=w"])
  required.unparse_flags()
  try:
    required(["tool"])
  except flags.IllegalFlagValueError as error:
    assert "--workdir must have a value" in str(error)
  else:
    raise AssertionError("--workdir is required unless optional")


def test_flag_arguments_passes_the_tools_own_flags_a_function_names():
  values = _tool_flags()
  # cli.run files absl's flags (--verbosity, ...) in the tool's FlagValues too.
  values["verbosity"] = flags.FLAGS["verbosity"]
  values(["tool", "--workdir=runs/x", "--overwrite", "--batch_size=3"])

  def work(output, workdir=None, *, overwrite=False, verbosity=None, other=1):
    del output, workdir, overwrite, verbosity, other

  assert cli.flag_arguments(values, work) == dict(output="out", workdir="runs/x", overwrite=True)
