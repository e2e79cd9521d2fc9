"""Unit tests of notice rendering: templates per level and language, kept with the notice."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import jinja2
import pytest

from services.dunning.domain import DunningAccount, Policy, default_policy
from services.dunning.domain.rendering import Renderer, TemplateMissing, format_date, format_money
from services.dunning.domain.statements import StatementFigures
from shared.ledger_feed import read_fact

D = date.fromisoformat


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer.from_package()


def account(**profile: Any) -> DunningAccount:
    """A dunning account fed with ledger facts as ``ar.ledger.events`` carries them."""
    dunning = DunningAccount("C7")
    dunning.observe(read_fact("ledger.customer_updated", {"customer_id": "C7", "name": "Müller & Söhne GmbH",
                                                          "country": "GB", **profile}, "ledger:x:1:0"))
    dunning.observe(read_fact("ledger.invoice_opened", {
        "customer_id": "C7", "invoice_id": "INV-9", "currency": "EUR", "amount": "1250.00",
        "issue_date": "2025-01-01", "due_date": "2025-01-31", "effective_date": "2025-01-01",
        "invoices": [{"invoice_id": "INV-9", "currency": "EUR", "open_amount": "1250.00",
                      "settled_date": None, "status": "open"}], "applied": [],
    }, "ledger:x:2:0"))
    return dunning


def test_every_level_of_the_default_policy_has_en_de_and_zh_templates(renderer: Renderer) -> None:
    assert renderer.missing(default_policy(), ("en", "de", "zh")) == []


def test_every_template_has_its_german_and_chinese_twin(renderer: Renderer) -> None:
    english = {name.removesuffix(".en.j2") for name in renderer.names if name.endswith(".en.j2")}
    assert {"_base", "statement", "instalment_reminder"} <= english
    for language in ("de", "zh"):
        assert {name.removesuffix(f".{language}.j2") for name in renderer.names
                if name.endswith(f".{language}.j2")} == english, language


def test_the_rendered_text_is_kept_with_the_notice(renderer: Renderer) -> None:
    dunning = account()
    notice = dunning.run(D("2025-02-21"), default_policy().model_copy(
        update={"annual_interest_percent": Decimal("9.12")}), renderer).notices[0]
    assert (notice["template"], notice["language"]) == ("first_notice", "en")
    text = notice["text"]
    assert text.startswith("Subject: Payment reminder\n\nDear Müller & Söhne GmbH,\n")
    # 1250.00 x 9.12% / 365 x 21 = 6.5589... -> 6.56
    assert "Invoice INV-9, due 31 January 2025: 1,250.00 EUR (21 days overdue, interest 6.56 EUR)" in text
    assert "Total due: 1,256.56 EUR" in text
    assert "Dunning fee" not in text  # the first notice has no fee
    assert "Please pay the total due by 7 March 2025." in text
    assert notice["notice_id"] in text
    stored = [e for e in dunning.collect_events() if type(e).__name__ == "NoticeIssued"]
    assert stored[0].notice["text"] == text  # the audit trail shows what was sent


def test_german_customers_get_german_text_with_german_number_and_date_formats(renderer: Renderer) -> None:
    dunning = account(country="DE")
    assert dunning.language == "de"
    dunning.run(D("2025-02-07"), default_policy(), renderer)
    notice = dunning.run(D("2025-02-21"), default_policy(), renderer).notices[0]
    assert (notice["template"], notice["language"]) == ("second_notice", "de")
    assert notice["text"].startswith("Betreff: Zweite Mahnung: überfällige Rechnungen\n")
    assert "Rechnung INV-9, fällig am 31.01.2025: 1.250,00 EUR (21 Tage überfällig)" in notice["text"]
    assert "Mahngebühr: 5,00 EUR" in notice["text"]
    assert "Gesamtbetrag: 1.255,00 EUR" in notice["text"]


def test_chinese_customers_get_chinese_text_with_chinese_number_and_date_formats(renderer: Renderer) -> None:
    dunning = account(language="zh")
    dunning.run(D("2025-02-07"), default_policy(), renderer)
    notice = dunning.run(D("2025-02-21"), default_policy(), renderer).notices[0]
    assert (notice["template"], notice["language"]) == ("second_notice", "zh")
    text = notice["text"]
    assert text.startswith("主题：第二次催款通知：发票已逾期\n\n致：Müller & Söhne GmbH\n")
    assert "发票 INV-9，到期日2025年1月31日：EUR 1,250.00（逾期21天）" in text
    assert "催款费：EUR 5.00" in text
    assert "应付总额：EUR 1,255.00" in text
    assert "请于2025年3月7日前支付应付总额。" in text
    assert f"参考编号：{notice['notice_id']}" in text


def test_a_chinese_customers_notice_and_statement_are_chinese_with_the_right_figures(
        renderer: Renderer) -> None:
    dunning = account(contacts={"email": "ap@example.cn", "language": "zh-CN"})
    assert dunning.language == "zh"
    policy = default_policy().model_copy(update={
        "annual_interest_percent": Decimal("9.12"), "statement_day": 1, "confirm_balance_every": 3})
    notice = dunning.run(D("2025-02-21"), policy, renderer).notices[0]
    assert (notice["template"], notice["language"]) == ("first_notice", "zh")
    assert notice["text"].startswith("主题：付款提醒\n")
    # 1250.00 x 9.12% / 365 x 21 = 6.56, as in English
    assert "发票 INV-9，到期日2025年1月31日：EUR 1,250.00（逾期21天，利息 EUR 6.56）" in notice["text"]
    assert "应付总额：EUR 1,256.56" in notice["text"]

    figures = StatementFigures("CNY", D("2025-02-01"), D("2025-02-28"), Decimal("12000.00"),
                               Decimal("10500.50"), Decimal("300.00"),
                               [{"invoice_id": "INV-9", "issue_date": "2025-01-01", "due_date": "2025-01-31",
                                 "open_amount": "10800.50"}])
    (statement,) = dunning.issue_statements(D("2025-03-01"), [figures], policy, renderer.statement)
    assert (statement["template"], statement["language"]) == ("statement", "zh")
    text = statement["text"]
    assert text.startswith("主题：对账单（2025年2月1日至2025年2月28日）\n")
    assert "随函附上贵方2025年2月1日至2025年2月28日期间以 CNY 计的对账单。" in text
    assert "  2025年2月1日余额：CNY 12,000.00\n  2025年2月28日余额：CNY 10,500.50\n" in text
    assert "  发票 INV-9，开票日期2025年1月1日，到期日2025年1月31日：CNY 10,800.50\n" in text
    assert "已收到但尚未核销至发票的款项：CNY 300.00" in text
    assert "请确认上述余额 CNY 10,500.50；" in text
    assert f"参考编号：{statement['statement_id']}" in text
    assert "{{" not in text and "Balance" not in text


@pytest.mark.parametrize(("profile", "language"), [
    ({"language": "de"}, "de"),
    ({"language": "zh"}, "zh"),
    ({"language": "zh-Hans-CN", "country": "DE"}, "zh"),
    ({"contacts": [{"email": "ap@example.cn", "language": "ZH"}]}, "zh"),
    ({"country": "AT"}, "de"),
    ({"country": "DE", "language": "en"}, "en"),
    ({"contacts": {"email": "ap@example.com", "language": "de"}}, "de"),
    ({"contacts": [{"email": "ap@example.com"}, {"language": "DE"}]}, "de"),
    ({"country": "FR"}, None),
])
def test_the_customer_language_comes_from_its_profile(profile: dict[str, Any], language: str | None) -> None:
    assert account(**profile).language == language


def test_a_language_without_templates_falls_back_to_the_policy_default(renderer: Renderer) -> None:
    notice = account(language="fr").run(D("2025-01-28"), default_policy(), renderer).notices[0]
    assert (notice["template"], notice["language"]) == ("courtesy_reminder", "en")
    assert notice["text"].startswith("Subject: Friendly reminder: payment due soon\n")
    assert "(" not in notice["text"].split("Invoice INV-9")[1].splitlines()[0]  # not overdue yet


def test_language_specific_template_names_are_used() -> None:
    policy = Policy.model_validate({"name": "p", "levels": [
        {"name": "one", "days_past_due": 1, "channel": "email", "template": "reminder",
         "templates": {"de": "mahnung"}},
    ]})
    renderer = Renderer({"reminder.en.j2": "EN {{ notice.level }}", "mahnung.de.j2": "DE {{ notice.level }}"})
    notice = account(language="de").run(D("2025-02-01"), policy, renderer).notices[0]
    assert (notice["template"], notice["language"], notice["text"]) == ("mahnung", "de", "DE 1")
    assert renderer.missing(policy, ("en", "de")) == []
    assert Renderer({}).missing(policy) == ["mahnung.de.j2", "reminder.en.j2"]


def test_an_undefined_variable_is_an_error_not_blank_text() -> None:
    renderer = Renderer({"courtesy_reminder.en.j2": "Dear {{ customer.nickname }}"})
    with pytest.raises(jinja2.UndefinedError):
        account().run(D("2025-01-28"), default_policy(), renderer)


def test_a_missing_template_is_refused_naming_it_and_nothing_is_recorded() -> None:
    dunning = account()
    dunning.collect_events()
    with pytest.raises(TemplateMissing, match=r"courtesy_reminder\.en\.j2"):
        dunning.run(D("2025-01-28"), default_policy(), Renderer({}))
    assert dunning.collect_events() == []
    assert dunning.last_run_on is None


def test_money_and_date_formats() -> None:
    assert format_money("1234567.50", "EUR", "en") == "1,234,567.50 EUR"
    assert format_money("1234567.50", "EUR", "de") == "1.234.567,50 EUR"
    assert format_money("5000", "JPY", "de") == "5.000 JPY"
    assert format_date("2025-03-07", "en") == "7 March 2025"
    assert format_date("2025-03-07", "de") == "07.03.2025"
    assert format_money("1234567.50", "EUR", "zh") == "EUR 1,234,567.50"
    assert format_money("-75.00", "CNY", "zh") == "-CNY 75.00"
    assert format_money("5000", "JPY", "zh") == "JPY 5,000"
    assert format_date("2026-12-07", "zh") == "2026年12月7日"


def test_every_default_template_renders_in_every_language(renderer: Renderer) -> None:
    policy = default_policy().model_copy(update={"annual_interest_percent": Decimal("8")})
    for language in ("en", "de", "zh"):
        dunning = account(language=language)
        texts = [n["text"] for day in ("2025-01-28", "2025-02-07", "2025-02-21", "2025-03-07", "2025-04-01",
                                       "2025-05-01")
                 for n in dunning.run(D(day), policy, renderer).notices]
        assert len(texts) == 6
        assert all("INV-9" in text and "{{" not in text for text in texts)


@pytest.mark.parametrize(("language", "expected"), [
    ("en", "Please pay 300.00 EUR by 10 March 2025"),
    ("de", "Bitte zahlen Sie 300,00 EUR bis zum 10.03.2025"),
    ("zh", "请于2025年3月10日前支付EUR 300.00"),
])
def test_the_instalment_reminder_renders_in_every_language(renderer: Renderer, language: str,
                                                            expected: str) -> None:
    notice = {"kind": "instalment_reminder", "template": "instalment_reminder", "language": language,
              "currency": "EUR", "notice_id": "N-1", "instalment": 2, "respond_by": "2025-03-10",
              "invoices": [{"invoice_id": "INV-9", "due_date": "2025-01-31", "open_amount": "900.00",
                            "days_past_due": 0, "interest": "0.00"}],
              "open_total": "900.00", "fees": "0.00", "interest": "0.00", "total_due": "300.00"}
    rendered = renderer(notice, {"customer_id": "C7", "name": "C7", "language": language}, default_policy())
    assert (rendered.template, rendered.language) == ("instalment_reminder", language)
    assert expected in rendered.text
