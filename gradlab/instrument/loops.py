"""Record any unrolled module without touching its code: every call of a reused submodule is one iteration.

    with gradlab.watch(model, loops=["encoder.slot_attention.gru"]) as rec: ...   # or loops="auto"

Call c = 1..n of a watched module within one forward of the watched model is iteration c of a layer named by its
path (the count restarts at each forward of the model: a forward pre-hook on the root). Per call, through the
recorder's taps (its schedule, statuses, norms, one host sync per step):

- `grad/out`  ‖∂L/∂output_c‖: the call's tensor outputs (all tensors of a tuple, also nested, as one norm);
- `grad/in`   ‖∂L/∂input_c‖ of the call's first tensor argument, or of the argument a mapping names
              (`loops={"cell": "hx"}`: a parameter name of the module's forward, or a position), measured on an
              alias made for that call (an identity view), so it is the gradient that flows through call c even
              when every call gets the same tensor.

A `ModuleList` (or `ModuleDict`) entry stands for its members, untied iterations of one loop: the calls of all of
them are numbered in order (an unrolled network with per-iteration weights, the EM layers' `iterations`).

`loops="auto"`: the first recorded forward counts the calls of every submodule that holds parameters and watches
the innermost ones called more than once (not their containers); from the next forward on they are recorded.
"""

from __future__ import annotations

import inspect
import warnings
from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

from gradlab.errors import ConfigError

if TYPE_CHECKING:
    from gradlab.instrument.recorder import Recorder

AUTO = "auto"


class Loops:
    """The watched loops of one recorder and their hooks (all removed by `remove`)."""

    def __init__(self, recorder: Recorder, model: nn.Module, spec):
        self.recorder, self.model = recorder, model
        self.auto = isinstance(spec, str) and spec == AUTO
        self.paths: list[str] = []  # what is watched, as module paths (rec.loops)
        self.described: list[str] = []  # the same with the argument grad/in is taken on, where one is named
        self._layer: dict[nn.Module, nn.Module] = {}  # called module → the loop (itself or its ModuleList)
        self._argument: dict[nn.Module, Argument] = {}  # called module → the argument grad/in is taken on
        self._handles: list = []
        self._discovery: list = []  # the counting hooks of loops="auto" until its first forward ends
        self._calls: dict[nn.Module, int] = defaultdict(int)
        self._active = False  # this forward of the root is recorded (recording, grad enabled)
        self._counting = self.auto
        loops = [] if self.auto else resolve(model, spec)  # every check before the first hook
        for loop, arguments in loops:
            self._watch(loop, arguments)
        if self.auto or loops:
            self._handles.append(model.register_forward_pre_hook(self._on_root))
            self._handles.append(model.register_forward_hook(self._after_root))

    # -- which modules ---------------------------------------------------------------------------------------
    def _watch(self, loop: nn.Module, arguments: dict[nn.Module, Argument] | None = None) -> None:
        self._argument |= arguments or {}
        for module in members(loop):
            self._layer[module] = loop
            self._handles.append(module.register_forward_pre_hook(self._before_call, with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._after_call))
        self.paths.append(self.recorder.names[loop])
        chosen = next(iter(arguments.values())) if arguments else None
        self.described.append(self.paths[-1] + (f" (grad/in on {chosen})" if chosen else ""))

    def _on_root(self, model, args) -> None:
        self._active = self.recorder.recording and torch.is_grad_enabled()
        self._calls.clear()
        if self._active and self._counting:
            self._discover()

    def _after_root(self, model, args, output) -> None:
        self._active = False  # a call of a loop outside a forward of the model is not an iteration

    def _discover(self) -> None:
        """Count one forward's calls of every parameterised submodule, then watch the repeated innermost ones."""
        for handle in self._discovery:  # a discovery forward that raised: count this forward afresh
            handle.remove()
        counted = [m for m in self.model.modules() if m is not self.model and next(m.parameters(), None) is not None]
        counts: dict[nn.Module, int] = defaultdict(int)

        def count(module, args):
            counts[module] += 1

        hooks = [m.register_forward_pre_hook(count) for m in counted]

        def found(model, args, output):
            for handle in self._discovery:
                handle.remove()
            self._discovery = []
            self._counting = False
            repeated = {m for m in counted if counts[m] >= 2}
            for module in [m for m in counted if m in repeated and not _contains_any(m, repeated)]:
                self._watch(module)
            if not self.paths:
                warnings.warn("gradlab.watch(loops='auto'): no submodule with parameters was called more than "
                              "once in a forward of the model, so no loop is recorded", stacklevel=2)

        self._discovery = [self.model.register_forward_hook(found), *hooks]

    # -- per call: device work only ----------------------------------------------------------------------------
    def _before_call(self, module, args, kwargs):
        if not self._active:
            return None
        loop = self._layer[module]
        self._calls[loop] += 1
        c = self._calls[loop]
        chosen = self._argument.get(module)
        if chosen is not None:
            return chosen.tapped(args, kwargs, lambda a: self._tap_input(a, loop, c))
        for i, a in enumerate(args):
            if isinstance(a, torch.Tensor):
                return (*args[:i], self._tap_input(a, loop, c), *args[i + 1:]), kwargs
        for k, a in kwargs.items():
            if isinstance(a, torch.Tensor):
                return args, {**kwargs, k: self._tap_input(a, loop, c)}
        return None

    def _tap_input(self, tensor: torch.Tensor, loop: nn.Module, c: int) -> torch.Tensor:
        alias = tensor.view_as(tensor) if tensor.requires_grad else tensor  # the gradient through call c alone
        return self.recorder.tap(alias, "grad/in", c, loop, False)

    def _after_call(self, module, args, output) -> None:
        if not self._active:
            return
        loop = self._layer[module]
        for tensor in _tensors(output):  # several tensors: their norms add in quadrature under one key
            self.recorder.tap(tensor, "grad/out", self._calls[loop], loop, False)

    def remove(self) -> None:
        for handle in [*self._handles, *self._discovery]:
            handle.remove()
        self._handles, self._discovery = [], []
        self._active = False


class Argument:
    """The argument of a watched module's calls that `grad/in` is taken on: a parameter `name` of its forward
    and/or a `position` among the positional arguments (both where the signature tells one from the other)."""

    def __init__(self, name: str | None, position: int | None):
        self.name, self.position = name, position

    @classmethod
    def of(cls, module: nn.Module, argument: int | str, path: str) -> Argument:
        """Check `argument` against the forward's signature (ConfigError naming its parameters)."""
        P = inspect.Parameter
        try:
            params = list(inspect.signature(module.forward).parameters.values())
        except (TypeError, ValueError):  # no signature to check against: take it as given
            return cls(argument, None) if isinstance(argument, str) else cls(None, argument)
        positional = [p.name for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
        named = [p.name for p in params if p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY)]
        kinds = {p.kind for p in params}
        takes = ", ".join(p.name for p in params) or "no arguments"
        if isinstance(argument, str):
            if argument not in named and P.VAR_KEYWORD not in kinds:
                raise ConfigError(f"loops: {path!r} has no argument {argument!r} for grad/in; its forward takes "
                                  f"{takes}")
            return cls(argument, positional.index(argument) if argument in positional else None)
        if argument >= len(positional) and P.VAR_POSITIONAL not in kinds:
            raise ConfigError(f"loops: {path!r} takes {len(positional)} positional argument(s) ({takes}): "
                              f"position {argument} for grad/in is out of range")
        return cls(positional[argument] if argument < len(positional) else None, argument)

    def __str__(self) -> str:
        return self.name if self.name is not None else f"argument {self.position}"

    def tapped(self, args: tuple, kwargs: dict, tap):
        """(args, kwargs) with the chosen argument passed through `tap`; None (the call as it is) when this call
        does not pass it as a tensor (GRUCell's hx = None at the first step: no grad/in for that call)."""
        if self.name is not None and isinstance(kwargs.get(self.name), torch.Tensor):
            return args, {**kwargs, self.name: tap(kwargs[self.name])}
        i = self.position
        if i is not None and i < len(args) and isinstance(args[i], torch.Tensor):
            return (*args[:i], tap(args[i]), *args[i + 1:]), kwargs
        return None


def resolve(model: nn.Module, spec) -> list[tuple[nn.Module, dict[nn.Module, Argument] | None]]:
    """The modules that `loops=` names, each with the argument of each member's calls that grad/in is taken on
    (None: the first tensor argument). Modules are paths as in `model.named_modules()` or module objects of the
    model, in a list, or the keys of a mapping whose values name the argument (a parameter name of the
    module's forward, or a position)."""
    if spec is None:
        return []
    if isinstance(spec, (str, nn.Module)):
        spec = [spec]
    if isinstance(spec, Mapping):
        entries = list(spec.items())
    else:
        try:
            entries = [(entry, None) for entry in spec]
        except TypeError:
            raise ConfigError(f"loops={spec!r}: expected 'auto' or a list of module paths or modules, or a mapping "
                              "of them to the argument grad/in is taken on") from None
    by_name = dict(model.named_modules())
    path = {m: name for name, m in by_name.items()}
    resolved: list[tuple[nn.Module, dict[nn.Module, Argument] | None]] = []
    for entry, argument in entries:
        if isinstance(entry, nn.Module):
            if entry not in path:
                raise ConfigError(f"loops: the module {type(entry).__name__} is not part of the watched model")
            module = entry
        elif isinstance(entry, str) and entry in by_name:
            module = by_name[entry]
        else:
            raise ConfigError(f"loops: {entry!r} is not a submodule of the model; {_suggest(entry, by_name)}")
        if module is model:
            raise ConfigError("loops: the watched model itself cannot be a loop (its forward restarts the count)")
        taken = [m for m in members(module) if any(m in members(other) for other, _ in resolved)]
        if taken:
            raise ConfigError(f"loops: {path[taken[0]]!r} is listed twice (itself, or as a member of a listed "
                              "ModuleList)")
        if not (argument is None or isinstance(argument, str) or (isinstance(argument, int)
                                                                 and not isinstance(argument, bool) and argument >= 0)):
            raise ConfigError(f"loops: the argument for {path[module]!r} is {argument!r}: give a parameter name of "
                              "its forward (e.g. 'hx'), a position >= 0, or None for the first tensor argument")
        chosen = None if argument is None else {m: Argument.of(m, argument, path[module]) for m in members(module)}
        resolved.append((module, chosen))  # each member's signature checked before any hook is attached
    return resolved


def members(loop: nn.Module) -> list[nn.Module]:
    """The modules whose calls are the iterations of `loop`: its members for a ModuleList/ModuleDict, else itself."""
    return list(loop.children()) if isinstance(loop, (nn.ModuleList, nn.ModuleDict)) else [loop]


def _suggest(entry, by_name: dict[str, nn.Module]) -> str:
    import difflib

    names = [n for n in by_name if n]
    close = difflib.get_close_matches(str(entry), names, n=3) if isinstance(entry, str) else []
    if close:
        return "did you mean " + " or ".join(repr(n) for n in close) + "?"
    return "paths are those of model.named_modules(), e.g. " + ", ".join(repr(n) for n in names[:4])


def _tensors(output):
    """The tensors of a call's output, also inside nested tuples, lists and dicts (nn.LSTM: (out, (h, c)))."""
    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, (tuple, list)):
        for item in output:
            yield from _tensors(item)
    elif isinstance(output, dict):
        for item in output.values():
            yield from _tensors(item)


def _contains_any(module: nn.Module, modules: set[nn.Module]) -> bool:
    return any(m in modules for m in module.modules() if m is not module)
