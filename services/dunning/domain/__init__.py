"""The dunning service's domain: policies as data, the per-customer dunning account, notices.

No I/O and no clock: the run date is a parameter, ledger facts come in as data, and the
notice text is rendered by a ``Renderer`` built once from the packaged templates.
"""

from services.dunning.domain.account import (
    DunningAccount,
    Promise,
    RunResult,
    dunning_account_id,
)
from services.dunning.domain.decision import Candidate, Decision, Line, decide
from services.dunning.domain.errors import DunningError
from services.dunning.domain.interest import late_interest
from services.dunning.domain.notice import NoticeRenderer, Rendered, notice_id
from services.dunning.domain.policy import DEFAULT_POLICY_NAME, Level, Policy, default_policy

__all__ = [
    "DEFAULT_POLICY_NAME",
    "Candidate",
    "Decision",
    "DunningAccount",
    "DunningError",
    "Level",
    "Line",
    "NoticeRenderer",
    "Policy",
    "Promise",
    "Rendered",
    "RunResult",
    "decide",
    "default_policy",
    "dunning_account_id",
    "late_interest",
    "notice_id",
]
