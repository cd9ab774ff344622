"""Demo data: the Haft Tapeh solidarity statement, its signatories, and bulk load data.

`load_demo` creates one open petition with a statement written from the facts
of the Haft Tapeh case and a few hundred verified signatures from trade
unions, federations, associations and individual workers, teachers, students
and academics in many countries. Its signatories are generated from the name
parts and organisation patterns below with a seeded random generator, so every
demo database holds the same people; they are fictional, and every address is
at example.org.

`add_generated_signatures` adds any number of further verified signatures to a
petition with COPY, for load tests and benchmarks: a million rows take a minute
or two. The tally triggers fire once per COPY statement, so the counts stay exact.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import asyncpg

from .db import asyncpg_dsn
from .keys import email_hash, normalise_email
from .signature import Display, Status

DEMO_SLUG = "free-haft-tapeh-workers"
DEMO_GOAL = 5000
DEMO_SEED = 1886  # any fixed number: the demo signatories are the same every time
DEMO_SIGNATURES = 360
DEMO_ORGANISATION_SHARE = 0.3
DEMO_DAYS = 21  # the demo petition was published this many days ago

GENERATED_BATCH = 25_000  # rows per COPY statement (each its own transaction)
GENERATED_ORGANISATION_SHARE = 0.02
GENERATED_DAYS = 28  # generated signatures spread over at most this many past days

# The statement -----------------------------------------------------------------

DEMO_TITLE = "Free the Haft Tapeh workers: drop all charges and sentences"

DEMO_SUMMARY = (
    "Workers of the Haft Tapeh sugar-cane company in Khuzestan, Iran, and their supporters "
    "were jailed for protesting over unpaid wages and organising an independent union. "
    "We call for the immediate and unconditional release of every detained worker and "
    "activist, and for the right to organise, to strike and to protest."
)

DEMO_TARGET = "The Head of the Judiciary and the Government of the Islamic Republic of Iran"

DEMO_BODY = """\
## Solidarity with the workers of Haft Tapeh

Haft Tapeh is a sugar-cane agro-industrial company in Khuzestan, Iran. Its workers
have protested and gone on strike again and again: over wages they were not paid,
and for the right to an independent union of their own.

They have been answered with prison. **Esmail Bakhshi**, a leader of the Haft Tapeh
workers' union, was detained together with other Haft Tapeh workers and their
supporters. Workers of the Azar-Ab industrial company were held too, as were people
arrested after a May Day rally. Together the detainees were sentenced to more than
100 years in prison and to an unprecedented number of lashes: for asking to be paid,
and for organising to defend themselves.

## Solidarity works, and it is not finished

Workers, students, teachers and retirees' associations in Iran protested against
these sentences, and trade unions and workers' organisations around the world stood
with them. The authorities then released Esmail Bakhshi and other detainees, but
called the release "temporary". Others are still in prison.

A release its own authors call temporary is not justice: it leaves the charges and
the sentences hanging over the workers and their supporters. We, the undersigned
trade unions, labour organisations, workers, teachers, students and academics, stand
with the workers of Haft Tapeh and Azar-Ab and with everyone imprisoned for defending
workers' rights in Iran.

Organising a union is not a crime. Striking is not a crime. Protesting is not a crime.
We will keep speaking until every one of them is free.
"""

DEMO_DEMANDS = [
    "The immediate and unconditional release of all detained Haft Tapeh and Azar-Ab "
    "workers, of everyone arrested after the May Day rally, and of all imprisoned "
    "workers and labour activists in Iran.",
    "The dropping of all charges and sentences, of prison and of lashes, against Esmail "
    'Bakhshi and every worker and supporter tried with him: no more "temporary" releases.',
    "The right of workers in Iran to organise independent trade unions of their own choosing.",
    "The right to strike and to protest without arrest, prosecution or dismissal.",
    "Payment in full of all wages owed to the workers of Haft Tapeh.",
]

# Who signs: countries, names, organisations -------------------------------------


@dataclass(frozen=True)
class Country:
    code: str  # ISO 3166-1 alpha-2
    weight: int  # how often its people sign, relative to the others
    name: str  # as it reads after "of": "the Netherlands"
    adjective: str
    names: str  # key into NAME_PARTS
    cities: tuple[str, ...]


def _countries(table: str) -> tuple[Country, ...]:
    countries = []
    for line in table.strip().splitlines():
        code, weight, name, adjective, names, cities = (f.strip() for f in line.split("|"))
        city_list = tuple(c.strip() for c in cities.split(","))
        countries.append(Country(code, int(weight), name, adjective, names, city_list))
    return tuple(countries)


# code | weight | name | adjective | names | cities
COUNTRIES = _countries("""
GB | 6 | the United Kingdom | British | english | London, Glasgow, Manchester, Cardiff, Leeds, Belfast
IE | 2 | Ireland | Irish | english | Dublin, Cork, Galway, Limerick
US | 5 | the United States | American | english | New York, Chicago, Oakland, Detroit, Philadelphia
CA | 3 | Canada | Canadian | english | Toronto, Montreal, Vancouver, Winnipeg, Halifax
AU | 3 | Australia | Australian | english | Sydney, Melbourne, Brisbane, Perth
NZ | 1 | New Zealand | New Zealand | english | Auckland, Wellington, Christchurch
FR | 5 | France | French | french | Paris, Marseille, Lyon, Toulouse, Lille, Nantes
BE | 2 | Belgium | Belgian | french | Brussels, Liège, Charleroi, Namur
DE | 5 | Germany | German | german | Berlin, Hamburg, Cologne, Frankfurt, Leipzig, Bremen
AT | 2 | Austria | Austrian | german | Vienna, Graz, Linz
CH | 2 | Switzerland | Swiss | german | Zurich, Bern, Basel
NL | 2 | the Netherlands | Dutch | dutch | Amsterdam, Rotterdam, Utrecht, Groningen
SE | 2 | Sweden | Swedish | nordic | Stockholm, Gothenburg, Malmö, Uppsala
NO | 2 | Norway | Norwegian | nordic | Oslo, Bergen, Trondheim
DK | 1 | Denmark | Danish | nordic | Copenhagen, Aarhus, Odense
FI | 1 | Finland | Finnish | finnish | Helsinki, Tampere, Turku
ES | 3 | Spain | Spanish | spanish | Madrid, Barcelona, Seville, Bilbao, Valencia
PT | 2 | Portugal | Portuguese | portuguese | Lisbon, Porto, Coimbra, Setúbal
IT | 3 | Italy | Italian | italian | Rome, Milan, Naples, Turin, Bologna, Genoa
GR | 2 | Greece | Greek | greek | Athens, Thessaloniki, Patras, Piraeus
PL | 1 | Poland | Polish | polish | Warsaw, Kraków, Gdańsk, Łódź
TR | 3 | Türkiye | Turkish | turkish | Istanbul, Ankara, Izmir, Adana
IR | 2 | Iran | Iranian | persian | Tehran, Ahvaz, Tabriz, Isfahan, Shiraz
IQ | 1 | Iraq | Iraqi | arabic | Baghdad, Basra, Erbil
EG | 1 | Egypt | Egyptian | arabic | Cairo, Alexandria, Mahalla
TN | 2 | Tunisia | Tunisian | arabic | Tunis, Sfax, Gafsa, Sousse
MA | 1 | Morocco | Moroccan | arabic | Casablanca, Rabat, Tangier
LB | 1 | Lebanon | Lebanese | arabic | Beirut, Tripoli, Sidon
IN | 3 | India | Indian | south_asian | Mumbai, Kolkata, Chennai, Delhi, Bengaluru
PK | 2 | Pakistan | Pakistani | south_asian | Karachi, Lahore, Faisalabad
BD | 2 | Bangladesh | Bangladeshi | south_asian | Dhaka, Chittagong, Khulna
NP | 1 | Nepal | Nepali | south_asian | Kathmandu, Pokhara
JP | 2 | Japan | Japanese | japanese | Tokyo, Osaka, Fukuoka, Sapporo
KR | 2 | South Korea | South Korean | korean | Seoul, Busan, Ulsan, Incheon
PH | 2 | the Philippines | Filipino | filipino | Manila, Quezon City, Cebu, Davao
ID | 1 | Indonesia | Indonesian | indonesian | Jakarta, Surabaya, Bandung
ZA | 3 | South Africa | South African | south_african | Johannesburg, Cape Town, Durban
NG | 2 | Nigeria | Nigerian | west_african | Lagos, Abuja, Kano, Port Harcourt
GH | 1 | Ghana | Ghanaian | west_african | Accra, Kumasi, Tema
KE | 1 | Kenya | Kenyan | east_african | Nairobi, Mombasa, Kisumu
BR | 3 | Brazil | Brazilian | portuguese | São Paulo, Rio de Janeiro, Recife, Porto Alegre
AR | 2 | Argentina | Argentine | spanish | Buenos Aires, Rosario, Córdoba
CL | 2 | Chile | Chilean | spanish | Santiago, Valparaíso, Concepción
MX | 2 | Mexico | Mexican | spanish | Mexico City, Guadalajara, Monterrey, Puebla
CO | 1 | Colombia | Colombian | spanish | Bogotá, Medellín, Cali
UY | 1 | Uruguay | Uruguayan | spanish | Montevideo, Salto
""")

# Organisations in these countries do not sign in the demo: it would endanger them.
NO_ORGANISATIONS_FROM = {"IR"}
# Individuals here sign only as initials or anonymously.
CAUTIOUS_COUNTRIES = {"IR"}


@dataclass(frozen=True)
class NameParts:
    female: tuple[str, ...]
    male: tuple[str, ...]
    family: tuple[str, ...]  # "Kowalski/Kowalska": masculine/feminine forms
    family_first: bool = False

    def person(self, rng: random.Random) -> str:
        female = rng.random() < 0.5
        given = rng.choice(self.female if female else self.male)
        forms = rng.choice(self.family).split("/")
        family = forms[-1] if female else forms[0]
        return f"{family} {given}" if self.family_first else f"{given} {family}"


def _names(female: str, male: str, family: str, family_first: bool = False) -> NameParts:
    def split(names: str) -> tuple[str, ...]:
        return tuple(n.strip() for n in names.split(","))

    return NameParts(split(female), split(male), split(family), family_first)


NAME_PARTS = {
    "english": _names(
        "Sarah, Emma, Rachel, Grace, Chloe, Megan, Aisha, Siobhan, Hannah, Jess",
        "James, David, Michael, Tom, Liam, Daniel, Patrick, Kwame, Rob, Callum",
        "Smith, Taylor, Brown, O'Neill, Murphy, Walker, Hughes, Clarke, Evans, Patel, "
        "Campbell, Kelly, Wright, Morgan, Okoye, Reid",
    ),
    "french": _names(
        "Camille, Léa, Manon, Chloé, Sophie, Inès, Claire, Amina",
        "Julien, Thomas, Nicolas, Antoine, Mathieu, Karim, Olivier, Yannick",
        "Martin, Bernard, Dubois, Moreau, Laurent, Lefèvre, Roux, Fournier, Girard, Mercier, "
        "Benali, Lambert",
    ),
    "german": _names(
        "Anna, Lena, Sophie, Marie, Katharina, Miriam, Julia, Sevgi",
        "Jonas, Felix, Lukas, Tobias, Jan, Deniz, Stefan, Matthias",
        "Müller, Schmidt, Schneider, Fischer, Weber, Wagner, Becker, Hoffmann, Koch, Richter, "
        "Yılmaz, Neumann",
    ),
    "dutch": _names(
        "Sanne, Lotte, Femke, Anouk, Eva, Fatima",
        "Daan, Bram, Jeroen, Ruben, Thijs, Mohamed",
        "de Jong, Jansen, de Vries, van Dijk, Bakker, Visser, Smit, Meijer, Mulder, Bos",
    ),
    "nordic": _names(
        "Ingrid, Astrid, Sofia, Maja, Karin, Sigrid, Elin",
        "Erik, Lars, Anders, Nils, Johan, Ole, Mikael",
        "Andersson, Johansson, Hansen, Nilsen, Larsen, Karlsson, Berg, Lindqvist, Pedersen, "
        "Nielsen, Eriksson, Dahl",
    ),
    "finnish": _names(
        "Aino, Laura, Elina, Sanna, Kaisa",
        "Mikko, Juha, Antti, Ville, Jukka",
        "Virtanen, Korhonen, Mäkinen, Nieminen, Laine, Heikkinen, Koskinen, Järvinen",
    ),
    "spanish": _names(
        "María, Lucía, Ana, Carmen, Valentina, Sofía, Paula, Gabriela",
        "José, Carlos, Javier, Diego, Pablo, Andrés, Luis, Martín",
        "García, Rodríguez, González, Fernández, López, Martínez, Sánchez, Pérez, Gómez, "
        "Díaz, Torres, Ramírez",
    ),
    "portuguese": _names(
        "Ana, Mariana, Beatriz, Juliana, Fernanda, Inês, Rita",
        "João, Pedro, Rafael, Lucas, Tiago, Bruno, Rui",
        "Silva, Santos, Oliveira, Souza, Pereira, Costa, Ferreira, Almeida, Carvalho, Rodrigues",
    ),
    "italian": _names(
        "Giulia, Francesca, Chiara, Sara, Elena, Valentina",
        "Marco, Luca, Alessandro, Matteo, Giorgio, Davide",
        "Rossi, Russo, Ferrari, Esposito, Bianchi, Romano, Colombo, Ricci, Marino, Greco",
    ),
    "greek": _names(
        "Maria, Eleni, Katerina, Sofia, Despina",
        "Giorgos, Nikos, Kostas, Dimitris, Yannis",
        "Papadopoulos/Papadopoulou, Georgiou, Nikolaidis/Nikolaidou, Konstantinou, "
        "Vlachos/Vlachou, Dimitriou, Alexiou",
    ),
    "polish": _names(
        "Anna, Katarzyna, Magdalena, Agnieszka, Joanna",
        "Piotr, Tomasz, Marcin, Paweł, Krzysztof",
        "Kowalski/Kowalska, Nowak, Wiśniewski/Wiśniewska, Wójcik, Lewandowski/Lewandowska, "
        "Zieliński/Zielińska, Kamiński/Kamińska",
    ),
    "turkish": _names(
        "Ayşe, Elif, Zeynep, Fatma, Deniz, Gülay",
        "Mehmet, Mustafa, Emre, Ali, Murat, Kemal",
        "Yılmaz, Kaya, Demir, Şahin, Çelik, Yıldız, Aydın, Arslan, Doğan",
    ),
    "persian": _names(
        "Maryam, Zahra, Sara, Narges, Leila, Shirin, Parisa",
        "Reza, Ali, Hossein, Mehdi, Amir, Saeed, Behnam",
        "Ahmadi, Hosseini, Karimi, Rahimi, Mohammadi, Moradi, Jafari, Rezaei, Ghasemi, Sadeghi",
    ),
    "arabic": _names(
        "Fatima, Amina, Layla, Mariam, Nour, Salma, Hana",
        "Mohamed, Ahmed, Youssef, Omar, Karim, Hassan, Samir",
        "Haddad, Mansour, Khalil, Saleh, Nasser, Hamdi, Trabelsi, Mahmoud, Aziz, Jaber",
    ),
    "south_asian": _names(
        "Priya, Anjali, Sunita, Ayesha, Meena, Nasrin, Farzana",
        "Rahul, Amit, Imran, Arjun, Sanjay, Bilal, Ravi",
        "Sharma, Khan, Das, Singh, Ahmed, Reddy, Chowdhury, Iyer, Hussain, Rai, Begum",
    ),
    "japanese": _names(
        "Yuki, Aiko, Haruka, Naomi, Sakura",
        "Hiroshi, Takeshi, Kenji, Daisuke, Shota",
        "Sato, Suzuki, Takahashi, Tanaka, Watanabe, Ito, Yamamoto, Nakamura",
    ),
    "korean": _names(
        "Ji-yeon, Min-ji, Seo-yeon, Hye-jin, Eun-ji",
        "Min-jun, Ji-hoon, Sung-ho, Dong-hyun, Jae-won",
        "Kim, Lee, Park, Choi, Jung, Kang, Cho, Yoon",
        family_first=True,
    ),
    "filipino": _names(
        "Maria, Jocelyn, Rowena, Kristine, Liza",
        "Jose, Ramon, Mark, Rodel, Arnel",
        "Santos, Reyes, Cruz, Bautista, Garcia, Mendoza, Dela Cruz, Villanueva",
    ),
    "indonesian": _names(
        "Siti, Dewi, Rina, Putri, Wulan",
        "Budi, Agus, Rizky, Andi, Dedi",
        "Santoso, Wijaya, Saputra, Hidayat, Nugroho, Pratama, Lestari",
    ),
    "south_african": _names(
        "Thandiwe, Nomvula, Lerato, Zanele, Ayanda, Naledi",
        "Sipho, Thabo, Mandla, Bongani, Themba, Pieter",
        "Dlamini, Nkosi, Ndlovu, Khumalo, Mokoena, Mahlangu, Botha, Naidoo, Mthembu",
    ),
    "west_african": _names(
        "Ngozi, Chioma, Funmilayo, Abena, Adaeze, Ama",
        "Chinedu, Emeka, Oluwaseun, Kwabena, Tunde, Kofi",
        "Okafor, Adeyemi, Okonkwo, Mensah, Boateng, Eze, Bello, Owusu, Adebayo",
    ),
    "east_african": _names(
        "Wanjiru, Akinyi, Achieng, Njeri, Wambui",
        "Otieno, Kamau, Mwangi, Ochieng, Kiprono",
        "Kariuki, Odhiambo, Mutua, Wafula, Njoroge, Onyango, Chebet",
    ),
}


class OrganisationPattern(NamedTuple):
    template: str  # with {country}, {adjective} or {city}
    type: str
    members: tuple[int, int]


ORGANISATION_PATTERNS = (
    OrganisationPattern("Transport Workers' Union of {country}", "trade_union", (3_000, 120_000)),
    OrganisationPattern("Railway Workers' Union of {country}", "trade_union", (2_000, 60_000)),
    OrganisationPattern(
        "{adjective} Union of Food, Agricultural and Sugar Workers", "trade_union", (2_000, 80_000)
    ),
    OrganisationPattern("{adjective} Teachers' Union", "trade_union", (5_000, 300_000)),
    OrganisationPattern("{city} Dock and Port Workers' Union", "trade_union", (300, 12_000)),
    OrganisationPattern("{city} Health and Care Workers' Union", "trade_union", (500, 20_000)),
    OrganisationPattern("{adjective} Workers' Confederation", "federation", (50_000, 2_000_000)),
    OrganisationPattern(
        "{adjective} Federation of Transport and Dock Workers", "federation", (20_000, 400_000)
    ),
    OrganisationPattern(
        "{adjective} Federation of Education Workers", "federation", (20_000, 600_000)
    ),
    OrganisationPattern("{city} Trades Council", "association", (1_000, 40_000)),
    OrganisationPattern("{city} University Students' Association", "association", (1_000, 30_000)),
    OrganisationPattern("{city} Retired Teachers' Association", "association", (50, 3_000)),
    OrganisationPattern("Labour Solidarity Network of {country}", "ngo", (20, 2_000)),
    OrganisationPattern("{city} Workers' Rights Centre", "ngo", (5, 300)),
    OrganisationPattern("{city} Socialist Labour Group", "political", (30, 3_000)),
    OrganisationPattern("{city} Migrant Workers' Collective", "other", (20, 1_500)),
)

OCCUPATIONS = (
    "bus driver", "train driver", "dock worker", "lorry driver", "primary school teacher",
    "secondary school teacher", "nurse", "care worker", "student", "PhD student",
    "university lecturer", "professor of labour history", "sociologist", "sugar refinery worker",
    "farm worker", "warehouse worker", "postal worker", "electrician", "metalworker",
    "retired teacher", "retired steelworker", "union organiser", "researcher", "journalist",
    "translator", "software developer", "hospital porter", "cleaner",
)  # fmt: skip

CONTACT_ROLES = (
    "General Secretary", "International Secretary", "International Officer", "President",
    "Secretary", "Chair", "Coordinator", "Campaigns Officer",
)  # fmt: skip

REF_CODES = ("itf", "newsletter", "union-site", "social", "email")

COMMENTS = (
    "Solidarity with the workers of Haft Tapeh!",
    "An injury to one is an injury to all.",
    "Organising a union is not a crime. Free them all.",
    "Pay the wages owed and drop every charge.",
    "To the workers of Haft Tapeh: you are not alone.",
    "Workers' rights are human rights.",
    "Release every detained worker now.",
    "We stand with Esmail Bakhshi and all the detained workers.",
    "No one should go to prison for asking to be paid.",
    "Sugar workers, teachers, students, retirees: one struggle.",
    "We will keep watching until every detainee is free.",
    "Drop the sentences. Free the prisoners. Respect the right to strike.",
)

# Comments in the signer's own language, for some of the name groups above.
LOCAL_COMMENTS = {
    "french": "Solidarité avec les travailleurs de Haft Tapeh !",
    "german": "Solidarität mit den Arbeiterinnen und Arbeitern von Haft Tapeh!",
    "dutch": "Solidariteit met de arbeiders van Haft Tapeh!",
    "spanish": "¡Solidaridad con los trabajadores de Haft Tapeh!",
    "portuguese": "Toda a solidariedade aos trabalhadores de Haft Tapeh!",
    "italian": "Solidarietà ai lavoratori di Haft Tapeh!",
    "turkish": "Haft Tapeh işçileriyle dayanışma!",
    "persian": "همبستگی با کارگران هفت‌تپه",
}

INDIVIDUAL_DISPLAY_WEIGHTS = (68, 20, 12)
ORGANISATION_DISPLAY_WEIGHTS = (90, 7, 3)
CAUTIOUS_DISPLAY_WEIGHTS = (0, 40, 60)

# Rows ---------------------------------------------------------------------------


class GeneratedSignature(NamedTuple):
    """One row for COPY into signatures: the field names are the column names.

    Generated columns (id, public_id) are left to the database. The rows go in
    clear; `petitions demo` seals them right after (sealing.seal_clear_rows).
    """

    petition_id: int
    version_id: int | None
    kind: str
    display: str
    name: str
    email: str
    email_hash: bytes
    country: str
    city: str
    occupation: str
    created_at: datetime
    verified_at: datetime
    updated_at: datetime
    organisation: str | None = None
    organisation_type: str | None = None
    website: str | None = None
    members: int | None = None
    comment: str | None = None
    updates: bool = False
    ref: str | None = None
    status: str = Status.VERIFIED
    language: str = "en"


class Organisation(NamedTuple):
    name: str
    type: str
    members: int


class SignerPool:
    """Random countries, people, organisations and signing times, from the tables above."""

    def __init__(self, rng: random.Random, start: datetime, end: datetime) -> None:
        self.rng = rng
        self.start = start
        self.seconds = max((end - start).total_seconds(), 1.0)
        self.countries = COUNTRIES
        self.country_weights = list(_cumulative(c.weight for c in COUNTRIES))
        self.organisation_countries = [c for c in COUNTRIES if c.code not in NO_ORGANISATIONS_FROM]
        self.organisation_country_weights = list(
            _cumulative(c.weight for c in self.organisation_countries)
        )

    def country(self, for_organisation: bool = False) -> Country:
        if for_organisation:
            population, weights = self.organisation_countries, self.organisation_country_weights
        else:
            population, weights = self.countries, self.country_weights
        return self.rng.choices(population, cum_weights=weights)[0]

    def person(self, country: Country) -> str:
        return NAME_PARTS[country.names].person(self.rng)

    def organisation(self, country: Country, city: str) -> Organisation:
        pattern = self.rng.choice(ORGANISATION_PATTERNS)
        name = pattern.template.format(country=country.name, adjective=country.adjective, city=city)
        low, high = pattern.members
        members = round(math.exp(self.rng.uniform(math.log(low), math.log(high))), -1)
        return Organisation(name, pattern.type, max(int(members), low))

    def display(self, country: Country, kind: str) -> str:
        if kind == "organisation":
            weights = ORGANISATION_DISPLAY_WEIGHTS
        elif country.code in CAUTIOUS_COUNTRIES:
            weights = CAUTIOUS_DISPLAY_WEIGHTS
        else:
            weights = INDIVIDUAL_DISPLAY_WEIGHTS
        return self.rng.choices(list(Display), weights)[0]

    def comment(self, country: Country, share: float) -> str | None:
        if self.rng.random() >= share:
            return None
        local = LOCAL_COMMENTS.get(country.names)
        if local and self.rng.random() < 0.5:
            return local
        return self.rng.choice(COMMENTS)

    def ref(self, share: float) -> str | None:
        return self.rng.choice(REF_CODES) if self.rng.random() < share else None

    def times(self, skew: float = 1.0) -> tuple[datetime, datetime]:
        """(created_at, verified_at): verified in the window, created a little before.

        skew > 1 crowds signatures towards the start of the window, as when a
        statement is first circulated.
        """
        verified = self.start + timedelta(seconds=self.seconds * self.rng.random() ** skew)
        created = verified - timedelta(seconds=self.rng.uniform(20, 3 * 3600))
        return created, verified


def _cumulative(weights: Iterable[int]) -> Iterable[int]:
    total = 0
    for weight in weights:
        total += weight
        yield total


def _website(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "https://example.org/" + re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")


# The demo petition ---------------------------------------------------------------


def demo_signatures(
    secret_key: str, petition_id: int, version_id: int, start: datetime, end: datetime
) -> list[GeneratedSignature]:
    """The demo's signatories: the same people every time (a seeded generator)."""
    pool = SignerPool(random.Random(DEMO_SEED), start, end)
    taken: set[tuple[str, str]] = set()
    rows = []
    for n in range(1, DEMO_SIGNATURES + 1):
        email = normalise_email(f"demo-{n}@example.org")
        kind = "organisation" if pool.rng.random() < DEMO_ORGANISATION_SHARE else "individual"
        country = pool.country(for_organisation=kind == "organisation")
        city = pool.rng.choice(country.cities)
        created, verified = pool.times(skew=1.6)
        row = GeneratedSignature(
            petition_id=petition_id,
            version_id=version_id,
            kind=kind,
            display=pool.display(country, kind),
            name=pool.person(country),
            email=email,
            email_hash=email_hash(secret_key, email),
            country=country.code,
            city=city,
            occupation=pool.rng.choice(OCCUPATIONS),
            created_at=created,
            verified_at=verified,
            updated_at=verified,
            comment=pool.comment(country, share=0.3),
            updates=pool.rng.random() < 0.6,
            ref=pool.ref(share=0.35),
        )
        if kind == "organisation":
            organisation = _unused_organisation(pool, country, city, taken)
            row = row._replace(
                occupation=pool.rng.choice(CONTACT_ROLES),
                organisation=organisation.name,
                organisation_type=organisation.type,
                members=organisation.members,
                website=_website(organisation.name) if pool.rng.random() < 0.7 else None,
            )
        rows.append(row)
    return rows


def _unused_organisation(
    pool: SignerPool, country: Country, city: str, taken: set[tuple[str, str]]
) -> Organisation:
    """An organisation not yet signed in this country (one signature each)."""
    while True:
        organisation = pool.organisation(country, city)
        key = (organisation.name.lower(), country.code)
        if key not in taken:
            taken.add(key)
            return organisation
        city = pool.rng.choice(country.cities)  # patterns with {city} then differ


async def load_demo(db_url: str, secret_key: str) -> tuple[str, bool]:
    """Create the demo petition (slug "free-haft-tapeh-workers") with a few hundred verified signatures.

    Idempotent: if the slug exists, do nothing and return (slug, False); else return (slug, True).
    Safe when two processes race: the petition row is inserted with ON CONFLICT DO NOTHING,
    and everything is written in one transaction.
    """
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        async with conn.transaction():
            now = await conn.fetchval("SELECT now()")
            published = now - timedelta(days=DEMO_DAYS)
            petition_id = await _insert_demo_petition(conn, published)
            if petition_id is None:
                return DEMO_SLUG, False
            version_id = await _insert_demo_statement(conn, petition_id, published)
            rows = demo_signatures(secret_key, petition_id, version_id, published, now)
            await _copy_signatures(conn, rows)
    finally:
        await conn.close()
    return DEMO_SLUG, True


async def _insert_demo_petition(conn: asyncpg.Connection, published: datetime) -> int | None:
    return await conn.fetchval(
        """
        INSERT INTO petitions (slug, status, goal, accepts_individuals, accepts_organisations,
                               moderate_organisations, default_language,
                               created_at, published_at)
        VALUES ($1, 'open', $2, true, true, true, 'en', $3, $4)
        ON CONFLICT (slug) DO NOTHING
        RETURNING id
        """,
        DEMO_SLUG,
        DEMO_GOAL,
        published - timedelta(hours=2),
        published,
    )


async def _insert_demo_statement(
    conn: asyncpg.Connection, petition_id: int, published: datetime
) -> int:
    version_id = await conn.fetchval(
        """
        INSERT INTO statement_versions (petition_id, version, note, created_at)
        VALUES ($1, 1, 'First version', $2)
        RETURNING id
        """,
        petition_id,
        published - timedelta(hours=2),
    )
    await conn.execute(
        """
        INSERT INTO statement_texts (version_id, language, title, summary, target, body, demands)
        VALUES ($1, 'en', $2, $3, $4, $5, $6)
        """,
        version_id,
        DEMO_TITLE,
        DEMO_SUMMARY,
        DEMO_TARGET,
        DEMO_BODY,
        DEMO_DEMANDS,
    )
    return version_id


# Generated signatures for load tests ---------------------------------------------


@dataclass(frozen=True)
class GenerationRun:
    """What every generated row of one call shares."""

    secret_key: str
    petition_id: int
    version_id: int | None
    token: str  # random per call, so emails and organisations never collide with earlier runs


def generated_signatures(
    run: GenerationRun, pool: SignerPool, first: int, count: int
) -> list[GeneratedSignature]:
    """Rows first .. first+count-1 of a run: mostly individuals, some organisations."""
    rng = pool.rng
    rows = []
    for n in range(first, first + count):
        email = f"gen-{run.token}-{n}@example.org"
        is_organisation = rng.random() < GENERATED_ORGANISATION_SHARE
        kind = "organisation" if is_organisation else "individual"
        country = pool.country(for_organisation=is_organisation)
        city = rng.choice(country.cities)
        created, verified = pool.times()
        row = GeneratedSignature(
            petition_id=run.petition_id,
            version_id=run.version_id,
            kind=kind,
            display=pool.display(country, kind),
            name=pool.person(country),
            email=email,
            email_hash=email_hash(run.secret_key, email),
            country=country.code,
            city=city,
            occupation=rng.choice(CONTACT_ROLES if is_organisation else OCCUPATIONS),
            created_at=created,
            verified_at=verified,
            updated_at=verified,
            comment=pool.comment(country, share=0.05),
            updates=rng.random() < 0.5,
            ref=pool.ref(share=0.2),
        )
        if is_organisation:
            organisation = pool.organisation(country, city)
            row = row._replace(
                organisation=f"{organisation.name}, Local {run.token}-{n}",
                organisation_type=organisation.type,
                members=organisation.members,
            )
        rows.append(row)
    return rows


async def add_generated_signatures(
    db_url: str,
    secret_key: str,
    slug: str,
    count: int,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Add `count` generated verified signatures to petition `slug` with COPY.

    Rows go in batches of GENERATED_BATCH, one COPY statement (and so one
    transaction) each; `progress(rows_done_so_far)` is called after each batch.
    Returns the number added. Raises LookupError for an unknown slug.
    """
    if count < 0:
        raise ValueError("count must not be negative")
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        petition = await conn.fetchrow(
            """
            SELECT p.id, coalesce(p.published_at, p.created_at) AS since, now() AS now,
                   (SELECT v.id FROM statement_versions v
                     WHERE v.petition_id = p.id ORDER BY v.version DESC LIMIT 1) AS version_id
              FROM petitions p WHERE p.slug = $1
            """,
            slug,
        )
        if petition is None:
            raise LookupError(f"no petition with slug {slug!r}")
        run = GenerationRun(
            secret_key, petition["id"], petition["version_id"], secrets.token_hex(4)
        )
        now = petition["now"]
        start = min(max(petition["since"], now - timedelta(days=GENERATED_DAYS)), now)
        pool = SignerPool(random.Random(run.token), start, now)

        def batch(done: int) -> list[GeneratedSignature]:
            return generated_signatures(run, pool, done + 1, min(GENERATED_BATCH, count - done))

        return await _copy_in_batches(conn, batch, count, progress)
    finally:
        await conn.close()


async def _copy_in_batches(
    conn: asyncpg.Connection,
    batch: Callable[[int], list[GeneratedSignature]],
    count: int,
    progress: Callable[[int], None] | None,
) -> int:
    """COPY batch(done) until `count` rows are in, building each next batch in a
    worker thread while the database takes the current one."""
    done = 0
    next_rows = asyncio.ensure_future(asyncio.to_thread(batch, done)) if count else None
    try:
        while next_rows is not None:
            rows = await next_rows
            following = done + len(rows)
            next_rows = None
            if following < count:
                next_rows = asyncio.ensure_future(asyncio.to_thread(batch, following))
            await _copy_signatures(conn, rows)
            done = following
            if progress is not None:
                progress(done)
    finally:
        if next_rows is not None:
            next_rows.cancel()
    return done


async def _copy_signatures(conn: asyncpg.Connection, rows: list[GeneratedSignature]) -> None:
    await conn.copy_records_to_table("signatures", records=rows, columns=GeneratedSignature._fields)
