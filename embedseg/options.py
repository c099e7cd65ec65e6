"""Options as dataclass fields: one declaration gives the Python default, the CLI flag and its help.

A step's Config dataclass (``TrainConfig``, ``PredictConfig``, ``PrepareConfig``, the baselines'
configs) declares each option once with :func:`option`; :func:`add_options` turns the fields into
``--field-name`` options and :func:`from_args` turns the parsed options back into the Config, so
Python callers and the command line share defaults and names. A field holding another Config
(:func:`nested`) contributes its options to the same parser, without a prefix.

Standard library only: the Snakefile and the baseline environments (no torch) import it.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import field
from typing import Any, TypeVar

Config = TypeVar("Config")


def option(default: Any, help_text: str, *, fingerprint: bool = False, **argparse_kwargs: Any) -> Any:
    """A config field that is also a command-line option; `argparse_kwargs` go to add_argument.

    `fingerprint`: the option changes what a run computes (see :func:`fingerprint_fields`).
    """
    return field(default=default, metadata={"help": help_text, "fingerprint": fingerprint, "argparse": argparse_kwargs})


def nested(config: type) -> Any:
    """A field holding the Config `config` (default: its defaults); its options join the parser."""
    return field(default_factory=config, metadata={"nested": config})


def option_fields(config: type) -> list[dataclasses.Field]:
    """The option fields of `config`, those of :func:`nested` configs in place (depth first)."""
    fields = []
    for f in dataclasses.fields(config):
        fields.extend(option_fields(f.metadata["nested"]) if "nested" in f.metadata else [f])
    return fields


def fingerprint_fields(config: type) -> tuple[str, ...]:
    """Names of the options of `config` declared with ``fingerprint=True``, in declaration order."""
    return tuple(f.name for f in option_fields(config) if f.metadata.get("fingerprint"))


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, config: type) -> None:
    """One ``--field-name`` option per field of the dataclass `config`, with its default and help.

    The type comes from the field's ``type`` metadata or its default; tuples take several values
    (``nargs="+"`` unless the field says otherwise) and booleans get ``--no-…`` as well (unless
    the field says ``action="store_true"``).
    """
    for f in option_fields(config):
        kwargs = dict(f.metadata["argparse"])
        default = f.default
        if isinstance(default, bool):
            kwargs.setdefault("action", argparse.BooleanOptionalAction)
        elif isinstance(default, tuple):
            kwargs.setdefault("nargs", "+")
            kwargs.setdefault("type", type(default[0]))
        elif default is not None and "action" not in kwargs:
            kwargs.setdefault("type", type(default))
        flag = f"--{f.name.replace('_', '-')}"
        parser.add_argument(flag, dest=f.name, default=default, help=f.metadata["help"], **kwargs)


def from_args(config: type[Config], args: argparse.Namespace) -> Config:
    """The dataclass `config` filled from the parsed options (multi-value options as tuples)."""
    values = {}
    for f in dataclasses.fields(config):
        if "nested" in f.metadata:
            values[f.name] = from_args(f.metadata["nested"], args)
            continue
        value = getattr(args, f.name)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return config(**values)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with "(default: …)" after each option that has a default: not after a required
    option, a flag that is off unless given, or one whose default None means "not given" (its
    help says what happens then)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.required or action.default is None or isinstance(action, argparse._StoreTrueAction):
            return action.help or ""
        return super()._get_help_string(action)
