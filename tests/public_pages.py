"""Every public page, with the data it needs, for the layout, accessibility and HTML tests.

Two petitions: one in English with Persian and Arabic translations (the interface
language comes from `?lang=`), and one whose only statement is Persian (a right-to-left
page whatever `?lang=` does). Signatures with long names in mixed scripts, so that the
lists show what phones must wrap.
"""

from __future__ import annotations

from browsers import BROWSER_ARGS, CHROMIUM  # noqa: F401 (the browser tests import them from here)
from conftest import add_signature, make_petition
from petitions.i18n import LANGUAGES
from petitions.petitions import StatementText, create_petition

PHONES = ({"width": 320, "height": 640}, {"width": 360, "height": 740})
INTERFACE_LANGUAGES = tuple(LANGUAGES)

PERSIAN = StatementText(
    title="آزادی فوری کارگران بازداشت‌شده‌ی هفت‌تپه",
    summary="ما خواستار آزادی همه‌ی کارگران بازداشت‌شده هستیم.",
    target="مقامات قضایی",
    body="ما در کنار **کارگران** نیشکر هفت‌تپه ایستاده‌ایم. ۱۲۵۰۰ کارگر در اعتصاب‌اند.",
    demands=("آزادی همه‌ی کارگران بازداشت‌شده", "لغو همه‌ی اتهام‌ها"),
)
ARABIC = StatementText(
    title="الحرية للعمال المعتقلين",
    summary="نطالب بالإفراج عن جميع العمال المعتقلين.",
    target="السلطات",
    body="نقف مع **العمال**.",
    demands=("الإفراج عن جميع العمال المعتقلين", "إسقاط جميع التهم"),
)
ENGLISH = StatementText(
    title="Release the detained Haft Tapeh workers",
    summary="Free them now.",
    target="The authorities",
    body="We stand with the **workers** of Haft Tapeh.",
    demands=("Release all detained workers", "Drop all charges"),
)


async def make_public_pages(conn, tokens) -> dict[str, str]:
    """Create the data and return {page name: path} for every public page."""
    await make_petition(conn, slug="other-one", title="Another open petition", goal=500)
    multilingual = await create_petition(
        conn, "release-them", {"en": ENGLISH, "fa": PERSIAN, "ar": ARABIC}, status="open", goal=1000
    )
    persian = await create_petition(
        conn, "haft-tapeh", {"fa": PERSIAN}, status="open", goal=20000, default_language="fa"
    )
    signer = None
    for petition_id in (multilingual, persian):
        for i in range(6):
            row = await add_signature(
                conn,
                petition_id,
                name=f"Nasrin Sotoudeh-Khorasani {i} نسرین ستوده",
                country=("IR", "DE", "GB")[i % 3],
                city="Tehran تهران",
                occupation="Lawyer and human rights defender",
                comment="همبستگی! Solidarity from the Rotterdam dockers, 12500 members",
            )
            signer = signer or row
        await add_signature(
            conn,
            petition_id,
            kind="organisation",
            country="FR",
            organisation="Confédération générale du travail — Fédération des travailleurs",
            website="https://cgt.example.org/a/very/long/path/that/does/not/break",
            members=12500,
            name="Marie-Thérèse Dupont-Aignan",
            occupation="secrétaire générale",
        )
    link = tokens.signature_link
    return {
        "index": "/",
        "petition": "/p/release-them",
        "persian petition": "/p/haft-tapeh",
        "signatures": "/p/release-them/signatures",
        "persian signatures": "/p/haft-tapeh/signatures",
        "thanks": "/p/release-them/thanks",
        "verified": "/verify/" + link("verify", signer["public_id"]),
        "withdraw": "/withdraw/" + link("withdraw", signer["public_id"]),
        "unsubscribe": "/unsubscribe/" + link("unsubscribe", signer["public_id"]),
        "privacy": "/privacy",
        "error": "/p/no-such-petition",
        "bad link": "/verify/not-a-token",
        "embed": "/p/release-them/embed",
        "persian embed": "/p/haft-tapeh/embed",
        "embed counter": "/p/release-them/embed?form=0",
        "receipt": "/p/haft-tapeh/receipt",
        # A receipt the log does not hold: the answer, with the form again.
        "receipt checked": "/p/release-them/receipt?receipt=" + "ABCD" * 8,
    }


def with_language(path: str, lang: str) -> str:
    return path + ("&" if "?" in path else "?") + "lang=" + lang
