"""`Source`: where a ticket comes from — a pruning method and the task it was found on.

The one place a `method[:task]` string is parsed and printed. `imp:vqa` is IMP on VQA, `imp:pretrain`
IMP on the pre-training objectives, `random` / `pretrained_magnitude` methods that need no source task
(they work on θ0 alone), `dense` the unpruned model. Whether the method is registered is checked by
the tickets layer (`tickets.get_method`); this type only guarantees a well-formed, path-safe name.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.errors import TicketError
from bench.core.io import safe_name

DENSE_NAME = "dense"
PRETRAIN = "pretrain"  # the pre-training objective mix, as a source task
# The pre-training objectives (UNITER's names in brackets): masked language modelling, image-text
# matching, masked region feature regression (MRFR) and masked region classification against the
# detector's soft labels (MRC-kl). The last two need region features.
OBJECTIVES = ("mlm", "itm", "mrm", "mrc", "tag")
REGION_OBJECTIVES = ("mrm", "mrc")
PIXEL_OBJECTIVES = ("tag",)  # image tagging: what a detector gives region backbones (pretrain_model.py)


@dataclass(frozen=True, order=True)
class Source:
    method: str
    task: str = ""  # "" = the method needs no source task

    def __post_init__(self) -> None:
        for what, value in (("method", self.method), ("task", self.task)):
            if not isinstance(value, str) or ":" in value or "__" in value:
                raise TicketError(f"invalid ticket source {self.method!r}:{self.task!r}: bad {what}")
        try:
            safe_name(self.method, "ticket source method")
            if self.task:
                safe_name(self.task, "ticket source task")
        except Exception as e:  # safe_name raises the base error type; sources speak TicketError
            raise TicketError(str(e)) from None

    @classmethod
    def parse(cls, text: "str | Source") -> "Source":
        """'imp:vqa' → Source('imp', 'vqa'); 'random' → Source('random', ''); 'dense' → DENSE."""
        if isinstance(text, Source):
            return text
        if not isinstance(text, str) or not text.strip() or text.count(":") > 1:
            raise TicketError(f"invalid ticket source {text!r}: expected <method>[:<source task>]")
        method, _, task = text.strip().partition(":")
        if not method or (":" in text and not task):
            raise TicketError(f"invalid ticket source {text!r}: expected <method>[:<source task>]")
        return cls(method, task)

    def __str__(self) -> str:
        return f"{self.method}:{self.task}" if self.task else self.method

    @property
    def is_dense(self) -> bool:
        return self.method == DENSE_NAME

    @property
    def objective(self) -> str:
        """What the source trains or scores on: its task, or the pre-training mix when it names none."""
        return self.task or PRETRAIN

    @property
    def key(self) -> str:
        """Path-safe directory name of its tickets: `<method>__<task or 'none'>`."""
        return f"{self.method}__{self.task or 'none'}"


DENSE = Source(DENSE_NAME)
