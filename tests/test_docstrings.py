"""Every public name has a docstring: the reference (docs/reference.rst) is
generated from them, and a name without one shows up there as a bare
signature."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from typing import Any, Protocol

import pytest_smtpd


def _public_modules() -> Iterator[Any]:
    yield pytest_smtpd
    for info in pkgutil.iter_modules(pytest_smtpd.__path__):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"pytest_smtpd.{info.name}")


def _is_protocol(cls: type) -> bool:
    # Structural types: their members are stubs the class docstring explains.
    return Protocol in cls.__bases__


def _undocumented() -> list[str]:
    missing: list[str] = []
    seen: set[int] = set()
    for module in _public_modules():
        names = getattr(module, "__all__", None) or [name for name in vars(module) if not name.startswith("_")]
        for name in names:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or id(obj) in seen:
                continue
            if getattr(obj, "__module__", "").split(".")[0] != "pytest_smtpd":
                continue  # imported from elsewhere (typing, the stdlib)
            seen.add(id(obj))
            qualified = f"{obj.__module__}.{obj.__qualname__}"
            if not inspect.getdoc(obj):
                missing.append(qualified)
            if inspect.isclass(obj) and not _is_protocol(obj):
                for member_name, member in vars(obj).items():
                    if member_name.startswith("_"):
                        continue
                    is_member = isinstance(member, property | staticmethod | classmethod) or inspect.isfunction(member)
                    # getattr on the class: a docstring inherited from a base counts.
                    if is_member and not inspect.getdoc(getattr(obj, member_name)):
                        missing.append(f"{qualified}.{member_name}")
    return sorted(missing)


def test_every_public_class_function_and_method_has_a_docstring() -> None:
    assert _undocumented() == []


def test_the_check_sees_a_missing_docstring() -> None:
    # The guard above must not pass vacuously: a public method stripped of
    # its docstring is reported.
    import pytest_smtpd.faults as faults

    original = faults.Faults.extend.__doc__
    try:
        faults.Faults.extend.__doc__ = None
        assert "pytest_smtpd.faults.Faults.extend" in _undocumented()
    finally:
        faults.Faults.extend.__doc__ = original
