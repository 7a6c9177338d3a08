"""Model families on the Python side: one module per family says where each
engine tensor comes from in that family's checkpoints. The engine's tensor list
(names, shapes, order) comes from its C++ model file (csrc/core/models/) through
the pybind11 module; a family module only maps its keys."""
from fastergpt.models import gpt2

FAMILIES = {"gpt2": gpt2}


def family(name: str = "gpt2"):
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"model family {name!r} is not supported; supported: "
                         f"{sorted(FAMILIES)}") from None
