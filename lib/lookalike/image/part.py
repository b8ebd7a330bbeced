"""One proposed part of a composite mark, as every path returns it (in-process, the worker and router, the client):
no torch here, so a client reads parts without it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FIGURE, TEXT = "figure", "text"  # a device; a line or block of lettering


@dataclass(frozen=True)
class Part:
    crop: tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the image: what `crop` takes
    kind: str                                # "figure" (a device) or "text" (a line or block of lettering)
    share: float                             # its share of the mark's ink (0-1)

    def as_dict(self) -> dict[str, Any]:
        return {"crop": list(self.crop), "kind": self.kind, "share": self.share}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Part:
        x0, y0, x1, y1 = (float(v) for v in d["crop"])
        return cls((x0, y0, x1, y1), str(d["kind"]), float(d["share"]))

    def describe(self) -> str:
        """One line: the kind, its share of the mark, and the --crop that searches it."""
        return f"{self.kind:6s}  {self.share:5.1%} of the mark  --crop {','.join(f'{v:g}' for v in self.crop)}"
