"""The shop simulator: realistic event logs, customers and catalogue, with ground truth.

>>> from jingzhun.synth import SynthConfig, simulate, World, Message
>>> data = simulate(SynthConfig(users=2000, seed=1))     # doctest: +SKIP
>>> data.write("shop/")                                   # doctest: +SKIP
>>> World.load("shop/").respond(["u00000001"], treated=[True], message=Message("beauty", 0.2), seed=0)  # doctest: +SKIP
"""

from jingzhun.synth.shop import ShopData, SynthConfig, simulate
from jingzhun.synth.world import REFERENCE_MESSAGE, Message, World

__all__ = ["REFERENCE_MESSAGE", "Message", "ShopData", "SynthConfig", "World", "simulate"]
