"""How ``--help`` names the values options take: words, never raw type names.

Typer shows a parameter's type when it has no ``metavar`` (``<int range>``, ``<bool>``, ``<path>``, and
``{folder}`` for a required argument). `label_command` gives every parameter that has none a metavar
(an option's explicit ``metavar=`` is kept):

* flags: nothing (``--force``);
* integers ``N``, other numbers ``X``, choices ``[a|b|c]``;
* paths: ``DIR`` for ``--out`` (always a folder, in every command), ``FILE`` for any other path option;
* text: the option's name in capitals (``--cells CELLS``), or a form (``--shard I/N``);
* arguments: their name in capitals, ``...`` when they take several (``gradscope merge PARTS...``).

Short options have one meaning across commands (tests/test_cli_help.py): ``-o`` is ``--out``, a folder;
commands that write one file (``check``, ``baseline``) take ``--output FILE`` without a short form.
Nothing here imports JAX.
"""

from __future__ import annotations

from typing import Any, get_args

#: text options whose value has a form worth showing
_FORMS = {"shard": "I/N", "coordinator": "HOST:PORT", "seeds": "SEED[,SEED…]", "cells": "CELL[,CELL…]"}


def _long_name(param: Any) -> str:
    longs = [o for o in getattr(param, "opts", ()) if o.startswith("--")]
    return (longs[0][2:] if longs else str(param.name)).replace("_", "-")


def _kind(param: Any) -> tuple[str, Any]:
    """(``"bool"``, ``"int"``, ``"float"``, ``"str"``, ``"path"`` or ``"choice"``, the choices) of a typer or
    click parameter."""
    desc = getattr(param, "type_descriptor", None)
    if desc is None:  # a plain click parameter
        t = getattr(param, "type", None)
        name = str(getattr(t, "name", "")).lower()
        choices = getattr(t, "choices", None)
        if choices:
            return "choice", choices
        return {"boolean": "bool", "integer": "int", "integer range": "int", "float range": "float"}.get(
            name, name
        ), None
    if desc.is_choice:
        return "choice", desc.choices
    if desc.is_path:
        return "path", None
    ann = desc.annotation
    args = [a for a in get_args(ann) if a is not type(None)]
    base = args[0] if args else ann
    return str(getattr(base, "__name__", base)).lower(), None


def metavar_for(param: Any) -> str:
    """The word that names ``param``'s value in the help (see the module docstring)."""
    name = _long_name(param)
    kind, choices = _kind(param)
    if getattr(param, "is_flag", False) or kind == "bool":
        return ""
    if choices:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in choices) + "]"
    if param.param_type_name == "argument":
        word = name.upper().replace("-", "_")
        return word + ("..." if param.nargs != 1 else "")
    if kind == "int":
        return "N"
    if kind == "float":
        return "X"
    if kind == "path":
        return "DIR" if name == "out" else "FILE"
    return _FORMS.get(name, name.upper().replace("-", "_"))


def _argument_usage(param: Any, word: str):
    required = bool(param.required)

    def pieces(ctx: Any) -> list[str]:
        return [word if required else f"[{word}]"]

    return pieces


def _no_type(ctx: Any = None) -> None:
    return None


def _labelled_help_option(get_help_option: Any):
    """``--help`` is made by click when the help is shown: a flag, so no word (not ``<bool>``)."""

    def wrapped(ctx: Any) -> Any:
        opt = get_help_option(ctx)
        if opt is not None and opt.metavar is None:
            opt.metavar = ""
        return opt

    return wrapped


def label_command(command: Any) -> None:
    """Give every parameter of ``command`` (a click command; a group's subcommands too) a metavar."""
    for sub in getattr(command, "commands", {}).values():
        label_command(sub)
    if hasattr(command, "get_help_option"):
        command.get_help_option = _labelled_help_option(command.get_help_option)
    for param in getattr(command, "params", ()):
        if param.metavar is None:
            param.metavar = metavar_for(param)
        if param.param_type_name == "argument":
            # the usage line shows a required argument as {name} and the arguments table its type
            # (<path>, <list[Path]>): the word says it
            param.get_usage_pieces = _argument_usage(param, param.metavar)
            param.display_type_rich = _no_type
