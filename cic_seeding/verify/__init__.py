"""The verifier: checks (plugins) run once per user over batches, against a chain port.

::

    from cic_seeding.verify import VerifyOptions, run_verify
    result = run_verify(settings, VerifyOptions(include=("balance",)), chain=chain)
    result.ok, result.to_dict(), result.render_text(), result.render_junit()
    result.not_applicable(), result.skipped(), result.failure_groups()
    write_html_report(result, "report.html")  # checks, opening-balance chart, failures
"""

from cic_seeding.verify.base import (
    NOT_IMPORTED,
    ChainCheck,
    Check,
    CheckContext,
    ImportState,
    Verdict,
    VerifyUser,
)
from cic_seeding.verify.port import VerifyChain
from cic_seeding.verify.registry import all_checks, check_ids, get_check
from cic_seeding.verify.report import render_html, write_html_report
from cic_seeding.verify.result import CheckResult, Failure, FailureGroup, VerifyResult
from cic_seeding.verify.runner import (
    SKIP_FLAGS,
    CheckPlan,
    VerifyOptions,
    connect_chain,
    plan_checks,
    run_verify,
    select_checks,
    verify_settings,
)
from cic_seeding.verify.tolerance import Tolerance

__all__ = ["NOT_IMPORTED", "SKIP_FLAGS", "ChainCheck", "Check", "CheckContext", "CheckPlan",
           "CheckResult", "Failure", "FailureGroup", "ImportState", "Tolerance", "Verdict",
           "VerifyChain", "VerifyOptions", "VerifyResult", "VerifyUser", "all_checks",
           "check_ids", "connect_chain", "get_check", "plan_checks", "render_html", "run_verify",
           "select_checks", "verify_settings", "write_html_report"]
