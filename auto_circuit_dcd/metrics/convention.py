"""How circuits are chosen and scored: one object that names the field's conventions.

Published numbers differ in three choices: how a circuit of ``n`` edges is chosen
(:data:`auto_circuit_dcd.circuits.circuit.SELECTIONS`), how edges are ranked (``"abs"``: by
``|score|``; ``"signed"``: most positive first), and whether CMD counts a circuit above
the model (:data:`.curves.CMD_FORMS`). MIB ranks by signed score for CPR and by
``|score|`` for CMD, and its CMD is two-sided; the method's release ranks by ``|score|``
and its CMD is one-sided. A :class:`Convention` holds the three choices:

1. ``rankings()``: the edge rankings to evaluate (one, or two when CPR and CMD rank
   differently);
2. ``cpr(curve)`` on the curve of ``cpr_ranking``, ``cmd(curve)`` on the curve of
   ``cmd_ranking`` in ``cmd_form``;
3. ``to_dict()``: what the report records, with the convention's name.

:func:`make_convention` builds one from the command's options, refusing contradictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from auto_circuit_dcd.circuits.circuit import check_selection
from auto_circuit_dcd.circuits.selection import Ranking, check_ranking
from auto_circuit_dcd.metrics.curves import check_cmd_form, cmd, cpr

__all__ = ["Convention", "MIB_PARITY", "make_convention"]


@dataclass(frozen=True)
class Convention:
    """Selection rule, edge rankings for CPR and CMD, and CMD's form."""

    selection: str = "topn"
    cpr_ranking: Ranking = "abs"
    cmd_ranking: Ranking = "abs"
    cmd_form: str = "one-sided"
    name: str = "custom"

    def __post_init__(self) -> None:
        check_selection(self.selection)
        check_ranking(self.cpr_ranking)
        check_ranking(self.cmd_ranking)
        check_cmd_form(self.cmd_form)

    def rankings(self) -> list[Ranking]:
        """The distinct rankings to evaluate, CPR's first."""
        return list(dict.fromkeys((self.cpr_ranking, self.cmd_ranking)))

    def cpr(self, curve: Any) -> float:
        """CPR of a curve evaluated with ``cpr_ranking``."""
        return cpr(curve)

    def cmd(self, curve: Any) -> float:
        """CMD (in ``cmd_form``) of a curve evaluated with ``cmd_ranking``."""
        return cmd(curve, form=self.cmd_form)

    def to_dict(self) -> dict[str, Any]:
        return {"convention": self.name, "rule": self.selection, "ranking": self.cpr_ranking,
                "cmd_ranking": self.cmd_ranking, "cmd": self.cmd_form}


#: MIB's convention: signed ranking for CPR, |score| for CMD, two-sided CMD, circuits by
#: EAP-IG's ``apply_topn(prune=True)``
MIB_PARITY = Convention("topn-prune", cpr_ranking="signed", cmd_ranking="abs",
                        cmd_form="two-sided", name="mib-parity")


def make_convention(selection: str | None = None, ranking: Ranking | None = None,
                    cmd_form: str | None = None, mib_parity: bool = False,
                    default_selection: str = "topn") -> Convention:
    """The convention of the given options (``None``: the default). ``mib_parity`` takes
    MIB's; a ranking or CMD form that contradicts it is a ``ValueError``."""
    if not mib_parity:
        ranking = ranking or "abs"
        return Convention(selection or default_selection, cpr_ranking=ranking,
                          cmd_ranking=ranking, cmd_form=cmd_form or "one-sided")
    if ranking is not None:
        raise ValueError(f"MIB parity ranks by signed score for CPR and by |score| for CMD; "
                         f"drop the ranking {ranking!r} or MIB parity")
    if cmd_form not in (None, MIB_PARITY.cmd_form):
        raise ValueError(f"MIB parity's CMD is two-sided; drop the CMD form {cmd_form!r} or "
                         "MIB parity")
    if selection in (None, MIB_PARITY.selection):
        return MIB_PARITY
    return Convention(selection, cpr_ranking=MIB_PARITY.cpr_ranking,
                      cmd_ranking=MIB_PARITY.cmd_ranking, cmd_form=MIB_PARITY.cmd_form,
                      name=f"mib-parity rankings and CMD, selection {selection}")
