"""Write ``minitransformer/training/data/reviews.csv``: short English reviews in three classes.

The sentences were written for minitransformer (2026) and are released under CC0. Nothing is copied
from an existing dataset: every sentence is one of the templates below with its slots filled from the
small word lists below, drawn with a fixed seed, so running this script again writes the same file.

    text,label,split
    "The soup was rich and full of flavour.",positive,train
    "The kettle holds about a litre and a half.",neutral,validation
    ...

Classes: ``positive`` and ``negative`` (an opinion, for or against), ``neutral`` (a plain fact about
the thing, no opinion). Topics: films, restaurants and food, products, hotels, books, apps.
120 sentences per class; the split is fixed and stratified: 96 of each class ``train``, 24 ``validation``.

Run:  python scripts/make_reviews_dataset.py [--out PATH]
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "minitransformer" / "training" / "data" / "reviews.csv"
PER_CLASS, VALIDATION_PER_CLASS, SEED = 120, 24, 2026

ALL = ("film", "dish", "restaurant", "product", "hotel", "book", "app")
PLACES = ("restaurant", "hotel")

#: What a review is about, by kind; the kind also picks the aspects and the templates that fit it.
THINGS = {
    "film": ["the film", "this movie", "the sequel", "the documentary", "the new thriller", "this comedy",
             "the animated feature", "the remake"],
    "dish": ["the soup", "the pasta", "the curry", "the dessert", "the pizza", "the burger", "the salad",
             "the brunch menu"],
    "restaurant": ["this cafe", "the bakery on the corner", "the new ramen place", "the pizzeria",
                   "the tapas bar", "the food truck"],
    "product": ["the kettle", "these headphones", "the backpack", "this blender", "the phone case",
                "the desk lamp", "these running shoes", "the vacuum cleaner", "the keyboard", "the umbrella"],
    "hotel": ["the hotel", "our room", "the guest house", "the campsite", "the hostel"],
    "book": ["the novel", "this cookbook", "the biography", "the second book in the series", "this guide"],
    "app": ["the app", "the latest update", "this game", "the budgeting app", "the map app"],
}

#: One singular noun phrase each, so that "{aspect} was" always agrees.
ASPECTS = {
    "film": ["the acting", "the soundtrack", "the ending", "the plot", "the dialogue", "the pacing"],
    "dish": ["the sauce", "the seasoning", "the portion", "the presentation", "the texture"],
    "restaurant": ["the service", "the bread", "the coffee", "the staff", "the atmosphere"],
    "product": ["the battery", "the build quality", "the zip", "the handle", "the cable", "the design"],
    "hotel": ["the bed", "the breakfast", "the shower", "the view", "the front desk", "the wifi"],
    "book": ["the writing", "the main character", "the artwork", "the first chapter", "the translation"],
    "app": ["the interface", "the search", "the sign-up process", "the login", "the offline mode"],
}

POSITIVE_ADJ = ["wonderful", "excellent", "great", "lovely", "fantastic", "superb", "brilliant", "delightful",
                "impressive", "charming", "outstanding", "really good"]
NEGATIVE_ADJ = ["awful", "terrible", "disappointing", "dreadful", "poor", "boring", "useless", "mediocre",
                "frustrating", "annoying", "really bad", "a letdown"]

#: (template, the kinds it fits). Positive and negative templates mirror each other, so that the words
#: that carry the opinion, not the sentence shape, tell the classes apart.
POSITIVE = [
    ("{thing} was {pos}.", ALL),
    ("I loved {thing}; {aspect} was {pos}.", ALL),
    ("Honestly, {thing} is {pos} and I would recommend it to anyone.", ALL),
    ("{aspect} of {thing} was {pos}, easily the best part.", ALL),
    ("What a {pos_noun}! {thing} exceeded every expectation.", ALL),
    ("Five stars: {thing} was {pos} from start to finish.", ALL),
    ("{thing} made my week, {aspect} especially.", ALL),
    ("I would happily go back to {thing}, it was {pos}.", PLACES),
    ("Really pleased with {thing}, {aspect} is {pos}.", ALL),
    ("Worth every penny: {thing} is {pos}.", ALL),
    ("We all enjoyed {thing} a lot.", ALL),
    ("I laughed all the way through {thing}.", ("film",)),
    ("{thing} was fresh and full of flavour.", ("dish",)),
    ("{thing} still works perfectly after a year.", ("product",)),
    ("{thing} was spotless and quiet.", ("hotel",)),
    ("I could not put {thing} down.", ("book",)),
    ("{thing} is fast and easy to use.", ("app",)),
    ("The staff at {thing} could not have been kinder.", PLACES),
]
NEGATIVE = [
    ("{thing} was {neg}.", ALL),
    ("I regret choosing {thing}; {aspect} was {neg}.", ALL),
    ("Honestly, {thing} is {neg} and I would not recommend it.", ALL),
    ("{aspect} of {thing} was {neg}, easily the worst part.", ALL),
    ("What a waste of money! {thing} let me down.", ALL),
    ("One star: {thing} was {neg} from start to finish.", ALL),
    ("{thing} ruined my week, {aspect} especially.", ALL),
    ("I will never go back to {thing}, it was {neg}.", PLACES),
    ("Really unhappy with {thing}, {aspect} is {neg}.", ALL),
    ("Not worth the price: {thing} is {neg}.", ALL),
    ("None of us enjoyed {thing} at all.", ALL),
    ("I fell asleep halfway through {thing}.", ("film",)),
    ("{thing} was cold and bland.", ("dish",)),
    ("{thing} broke after a week.", ("product",)),
    ("{thing} was dirty and noisy.", ("hotel",)),
    ("I gave up on {thing} after fifty pages.", ("book",)),
    ("{thing} crashes every time I open it.", ("app",)),
    ("The staff at {thing} were rude and slow.", PLACES),
]
#: Facts with no opinion in them.
NEUTRAL = [
    ("{thing} was released in {year}.", ("film", "book", "app")),
    ("I watched {thing} with my {person} on {day}.", ("film",)),
    ("{thing} is about {hours} hours long.", ("film",)),
    ("{thing} is in {language} with English subtitles.", ("film",)),
    ("I ordered {thing} on {day}.", ("dish",)),
    ("{thing} is served with {side}.", ("dish",)),
    ("{thing} costs about {price} euros.", ("dish", "product", "book")),
    ("{thing} opens at {hour} on weekdays.", ("restaurant",)),
    ("We went to {thing} with my {person} on {day}.", PLACES),
    ("{thing} is ten minutes from the station.", PLACES),
    ("{thing} takes bookings by phone.", PLACES),
    ("{thing} comes in {colour} and {colour2}.", ("product",)),
    ("{thing} arrived on {day} in a cardboard box.", ("product",)),
    ("{thing} is available in {n} sizes.", ("product",)),
    ("My {person} ordered {thing} online.", ("product", "book")),
    ("We stayed at {thing} for {n} nights.", ("hotel",)),
    ("Check-in at {thing} starts at {hour}.", ("hotel",)),
    ("{thing} has about {pages} pages.", ("book",)),
    ("I borrowed {thing} from the library on {day}.", ("book",)),
    ("{thing} is also sold as an audiobook.", ("book",)),
    ("I installed {thing} on {day}.", ("app",)),
    ("{thing} asks for an email address when you sign up.", ("app",)),
    ("{thing} runs on phones and tablets.", ("app",)),
]

SLOTS = {
    "pos_noun": ["treat", "pleasure", "find", "surprise", "gem"],
    "colour": ["black", "white", "grey", "blue", "green", "red"],
    "colour2": ["silver", "navy", "beige", "orange", "yellow"],
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "person": ["sister", "brother", "mother", "father", "flatmate", "colleague", "friend", "neighbour"],
    "price": ["12", "20", "35", "49", "60", "85", "120"],
    "year": ["2019", "2021", "2023", "2024", "2025"],
    "n": ["two", "three", "four", "five"],
    "hours": ["one and a half", "two", "two and a half", "three"],
    "language": ["French", "Korean", "Spanish", "Italian", "Japanese"],
    "side": ["rice", "chips", "a green salad", "bread", "roast potatoes"],
    "hour": ["seven", "eight", "nine", "noon", "two in the afternoon"],
    "pages": ["200", "250", "320", "400", "600"],
}


def fill(template: str, kinds: tuple[str, ...], rng: random.Random) -> str:
    """One sentence: a thing of one of ``kinds``, an aspect of that kind, every other slot from its list."""
    kind = rng.choice(kinds)
    values = {name: rng.choice(words) for name, words in SLOTS.items()}
    values.update(thing=rng.choice(THINGS[kind]), aspect=rng.choice(ASPECTS[kind]),
                  pos=rng.choice(POSITIVE_ADJ), neg=rng.choice(NEGATIVE_ADJ))
    text = template.format(**values)
    text = text.replace(". the", ". The").replace("! the", "! The").replace("! these", "! These")
    text = text.replace("! this", "! This").replace("! our", "! Our")
    return text[0].upper() + text[1:]


def sentences(templates: list[tuple[str, tuple[str, ...]]], rng: random.Random, n: int) -> list[str]:
    """``n`` distinct sentences from ``templates``, each template used about equally often."""
    seen: dict[str, None] = {}
    for draw in range(100 * n):  # a template with few fillings repeats itself: draw again, with the next one
        seen.setdefault(fill(*templates[draw % len(templates)], rng))
        if len(seen) == n:
            return list(seen)
    raise RuntimeError(f"the templates give fewer than {n} distinct sentences")


def make_rows(seed: int = SEED) -> list[dict[str, str]]:
    """Every row of the file: per class, the first PER_CLASS - VALIDATION_PER_CLASS are ``train``."""
    rng = random.Random(seed)
    rows = []
    for label, templates in [("positive", POSITIVE), ("negative", NEGATIVE), ("neutral", NEUTRAL)]:
        texts = sentences(templates, rng, PER_CLASS)
        rng.shuffle(texts)
        n_train = PER_CLASS - VALIDATION_PER_CLASS
        rows += [{"text": t, "label": label, "split": "train" if i < n_train else "validation"}
                 for i, t in enumerate(texts)]
    rng.shuffle(rows)  # classes interleaved in the file, as a reader would expect
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = make_rows()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label", "split"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
