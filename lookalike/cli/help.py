"""Help pages a new user can read: no type tags such as `<bool>`, `<list[str]>` or `{INDEX}`.

Recent Typer versions print every parameter's Python type in angle brackets, flags included (`--json <bool>`),
and a required argument in braces. Here a flag shows nothing after its name (it takes no value), an argument its
name in capitals (INDEX, PHOTOS: the help says what it is), and an option that takes a value one plain word (PATH,
N, NUMBER, TEXT, or its choices). The classes below swap in these parameter classes as the help is built, so no
command has to say anything; on Typer versions without type tags the overrides are simply never called.
"""

from __future__ import annotations

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

#: Typer's type names (inside its angle brackets) and the word shown instead.
WORDS = {"str": "TEXT", "int": "N", "int range": "N", "float": "NUMBER", "float range": "NUMBER", "path": "PATH",
         "file": "PATH", "directory": "PATH", "Path": "PATH"}


class _Argument(TyperArgument):
    @property
    def display_name_raw(self) -> str:
        return self.metavar or self.name.upper()

    def display_type_rich(self, ctx) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")


class _Option(TyperOption):
    def display_type_rich(self, ctx) -> str | None:
        if self.is_flag or self.count:
            return None
        if self.metavar is not None:
            return self.metavar
        return _word(self.display_type(ctx).strip("<>"))


def _word(label: str) -> str:
    """`list[str]` -> TEXT, `int range` -> N, `a|b` stays (the choices), anything else in capitals."""
    if label.startswith("list[") and label.endswith("]"):
        label = label[5:-1]
    return WORDS.get(label) or (label if "|" in label else label.upper())


def _plain(params: list) -> list:
    for param in params:
        if type(param) is TyperArgument:
            param.__class__ = _Argument
        elif type(param) is TyperOption:
            param.__class__ = _Option
    return params


class Command(TyperCommand):
    def get_params(self, ctx):
        return _plain(super().get_params(ctx))


class Group(TyperGroup):
    """The `lookalike` group: its commands and sub-groups (`lookalike model`) get plain help too."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _plain_commands(self)

    def get_params(self, ctx):
        return _plain(super().get_params(ctx))


def _plain_commands(group: TyperGroup) -> None:
    for command in group.commands.values():
        if type(command) is TyperCommand:
            command.__class__ = Command
        elif type(command) is TyperGroup:
            command.__class__ = Group
            _plain_commands(command)
