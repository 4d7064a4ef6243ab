"""The simulated shop's customer personas.

Each persona is a distribution over behaviour, not a fixed behaviour: users draw their own
purchase rate, dropout probability, tastes and responsiveness from it, so personas overlap the
way real segments do. Rates are per day while a customer is alive, in the manner of BG/NBD:
purchases follow a Poisson process, and after each purchase the customer drops out for good
with probability p.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Persona:
    name: str
    share: float
    signup: tuple[float, float]  # sign-up window as fractions of the horizon (negative: before it)
    purchase_rate: float  # mean purchases per day while alive (gamma across users)
    rate_shape: float  # gamma shape: smaller is more heterogeneous
    dropout: tuple[float, float]  # beta(a, b) of the dropout probability after each purchase
    browse_rate: float  # browsing-only sessions per day while alive
    views: float  # mean product views per session beyond the first
    price_sensitivity: tuple[float, float]  # beta(a, b)
    discount_affinity: tuple[float, float]  # beta(a, b): appetite for promotions
    concentration: float  # Dirichlet concentration of category tastes (small: one passion)
    staples: float  # chance a purchase session re-buys one of the user's staple items
    quantity: float  # mean extra units per order line
    open_rate: float  # mean chance to open a marketing email
    click_rate: float  # mean chance to click, given an open
    convert_rate: float  # chance a click converts someone who would not have bought
    sleeping_dog: float  # share who buy less when messaged
    channels: tuple[float, float, float]  # web, app, mini_program
    hour: float  # typical hour of day of sessions
    opt_in: float  # chance of marketing consent


PERSONAS: tuple[Persona, ...] = (
    Persona(
        "loyal_high_spender",
        0.08,
        (-1.5, 0.3),
        1 / 60,
        4.0,
        (1.0, 60.0),
        1 / 100,
        1.0,
        (2.0, 9.0),
        (1.5, 6.0),
        2.5,
        0.35,
        0.6,
        0.55,
        0.35,
        0.10,
        0.01,
        (0.25, 0.6, 0.15),
        21.0,
        0.8,
    ),
    Persona(
        "bargain_hunter",
        0.16,
        (-1.0, 0.8),
        1 / 140,
        2.5,
        (2.0, 35.0),
        1 / 90,
        1.5,
        (8.0, 2.0),
        (7.0, 2.0),
        2.0,
        0.15,
        0.3,
        0.40,
        0.45,
        0.25,
        0.02,
        (0.2, 0.3, 0.5),
        12.5,
        0.85,
    ),
    Persona(
        "category_enthusiast",
        0.16,
        (-1.0, 0.8),
        1 / 110,
        3.0,
        (1.5, 40.0),
        1 / 100,
        1.2,
        (3.0, 5.0),
        (2.0, 4.0),
        0.12,
        0.25,
        0.4,
        0.35,
        0.30,
        0.18,
        0.02,
        (0.5, 0.35, 0.15),
        22.0,
        0.7,
    ),
    Persona(
        "new_user",
        0.16,
        (0.84, 1.0),
        1 / 60,
        2.0,
        (2.0, 20.0),
        1 / 35,
        1.2,
        (4.0, 4.0),
        (3.0, 3.0),
        1.2,
        0.05,
        0.3,
        0.50,
        0.30,
        0.20,
        0.03,
        (0.2, 0.55, 0.25),
        20.0,
        0.75,
    ),
    Persona(
        "lapsing",
        0.22,
        (-1.5, 0.35),
        1 / 80,
        2.0,
        (8.0, 12.0),
        1 / 130,
        1.0,
        (5.0, 4.0),
        (3.0, 4.0),
        1.5,
        0.1,
        0.3,
        0.15,
        0.20,
        0.08,
        0.08,
        (0.5, 0.3, 0.2),
        20.0,
        0.6,
    ),
    Persona(
        "window_shopper",
        0.22,
        (-1.0, 0.8),
        1 / 800,
        1.5,
        (2.0, 30.0),
        1 / 75,
        2.0,
        (5.0, 5.0),
        (3.0, 5.0),
        1.5,
        0.0,
        0.2,
        0.30,
        0.25,
        0.05,
        0.10,
        (0.3, 0.25, 0.45),
        23.0,
        0.65,
    ),
)

PERSONA_NAMES: tuple[str, ...] = tuple(p.name for p in PERSONAS)
