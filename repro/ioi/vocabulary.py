"""The words of IOI prompts: the templates, and the names, places and objects that fill them.

Every name, place and object used by the generator (``repro.ioi.dataset.generate_pairs``) must be a single
token (with its leading space) for the model's tokenizer; ``vocabulary_for`` keeps those and counts the
words it drops, so all prompts of one template have one token length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# {A} and {B} are the two names introduced first, {S} the second mention of the subject. ABBA: IO comes
# first (A = IO, B = S); BABA: S comes first. The seed's sentence is the first template in ABBA order.
TEMPLATES = (
    "After {A} and {B} went to the {PLACE}, {S} gave the {OBJECT} to",
    "When {A} and {B} went to the {PLACE}, {S} gave the {OBJECT} to",
    "Then, {A} and {B} went to the {PLACE}. {S} gave the {OBJECT} to",
    "Then, {A} and {B} had a lot of fun at the {PLACE}. {S} gave the {OBJECT} to",
    "Then, {A} and {B} were working at the {PLACE}. {S} decided to give the {OBJECT} to",
    "Then, {A} and {B} were thinking about going to the {PLACE}. {S} wanted to give the {OBJECT} to",
    "Then, {A} and {B} had a long argument, and afterwards {S} said to",
    "When {A} and {B} got the {OBJECT} at the {PLACE}, {S} decided to give it to",
    "While {A} and {B} were working at the {PLACE}, {S} gave the {OBJECT} to",
    "While {A} and {B} were commuting to the {PLACE}, {S} gave the {OBJECT} to",
    "After the lunch, {A} and {B} went to the {PLACE}. {S} gave the {OBJECT} to",
    "Afterwards, {A} and {B} went to the {PLACE}. {S} gave the {OBJECT} to",
    "Then, {A} and {B} had a long argument. Afterwards {S} said to",
    "Friends {A} and {B} found the {OBJECT} at the {PLACE}. {S} gave it to",
    "Yesterday {A} and {B} walked to the {PLACE}, and {S} handed the {OBJECT} to",
    "At the {PLACE}, {A} and {B} found the {OBJECT}. Then {S} passed it to",
)
ORDERS = ("ABBA", "BABA")

NAMES = [
    "Aaron",
    "Adam",
    "Alan",
    "Alex",
    "Alice",
    "Amanda",
    "Amy",
    "Andrew",
    "Angela",
    "Anna",
    "Anne",
    "Anthony",
    "Arthur",
    "Ashley",
    "Barbara",
    "Ben",
    "Benjamin",
    "Beth",
    "Betty",
    "Bill",
    "Bob",
    "Brandon",
    "Brian",
    "Bruce",
    "Carl",
    "Carol",
    "Catherine",
    "Charles",
    "Charlie",
    "Chris",
    "Christian",
    "Christina",
    "Christine",
    "Claire",
    "Craig",
    "Daniel",
    "Danny",
    "David",
    "Dennis",
    "Diana",
    "Donald",
    "Donna",
    "Dorothy",
    "Douglas",
    "Edward",
    "Elizabeth",
    "Ellen",
    "Emily",
    "Emma",
    "Eric",
    "Eva",
    "Frank",
    "Gary",
    "George",
    "Grace",
    "Greg",
    "Hannah",
    "Harry",
    "Helen",
    "Henry",
    "Ian",
    "Jack",
    "Jacob",
    "James",
    "Jane",
    "Janet",
    "Jason",
    "Jeff",
    "Jennifer",
    "Jeremy",
    "Jerry",
    "Jessica",
    "Jim",
    "Joe",
    "John",
    "Jonathan",
    "Joseph",
    "Joshua",
    "Julia",
    "Justin",
    "Karen",
    "Kate",
    "Katie",
    "Keith",
    "Kelly",
    "Kevin",
    "Kim",
    "Laura",
    "Lauren",
    "Linda",
    "Lisa",
    "Louis",
    "Lucy",
    "Luke",
    "Maria",
    "Mark",
    "Martin",
    "Mary",
    "Matt",
    "Matthew",
    "Max",
    "Megan",
    "Michael",
    "Michelle",
    "Mike",
    "Nancy",
    "Nathan",
    "Nicholas",
    "Nick",
    "Nicole",
    "Oliver",
    "Pamela",
    "Patricia",
    "Patrick",
    "Paul",
    "Peter",
    "Philip",
    "Rachel",
    "Ralph",
    "Rebecca",
    "Richard",
    "Robert",
    "Roger",
    "Ronald",
    "Rose",
    "Ruth",
    "Ryan",
    "Sam",
    "Samuel",
    "Sandra",
    "Sarah",
    "Scott",
    "Sean",
    "Sharon",
    "Simon",
    "Sophie",
    "Stephen",
    "Steve",
    "Steven",
    "Susan",
    "Thomas",
    "Tim",
    "Timothy",
    "Tom",
    "Tony",
    "Victoria",
    "Walter",
    "William",
]
PLACES = [
    "store",
    "shop",
    "school",
    "hospital",
    "station",
    "restaurant",
    "office",
    "park",
    "garden",
    "house",
    "market",
    "library",
    "church",
    "beach",
    "kitchen",
    "bank",
    "hotel",
    "museum",
    "airport",
    "river",
]
OBJECTS = [
    "bag",
    "book",
    "ring",
    "drink",
    "bottle",
    "basketball",
    "kiss",
    "computer",
    "necklace",
    "letter",
    "ball",
    "box",
    "apple",
    "cake",
    "key",
    "phone",
    "watch",
    "hat",
    "snack",
    "pen",
]


@dataclass(frozen=True)
class Vocabulary:
    """The words usable with one tokenizer, and how many candidates were dropped as multi-token."""

    names: tuple[str, ...]
    places: tuple[str, ...]
    objects: tuple[str, ...]
    dropped: dict[str, list[str]] = field(default_factory=dict)  # kind -> dropped words

    def report(self) -> dict[str, int]:
        return {
            "names_kept": len(self.names),
            "names_dropped": len(self.dropped.get("names", [])),
            "places_kept": len(self.places),
            "places_dropped": len(self.dropped.get("places", [])),
            "objects_kept": len(self.objects),
            "objects_dropped": len(self.dropped.get("objects", [])),
        }


def token_ids(tokenizer, text: str) -> list[int]:
    """The tokenizer's ids for ``text`` as plain text: no BOS or other special tokens, as in the seed."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def is_single_token(tokenizer, word: str) -> bool:
    return len(token_ids(tokenizer, " " + word)) == 1


def vocabulary_for(tokenizer, min_names: int = 3) -> Vocabulary:
    """Keep the names, places and objects that are one token (with a leading space) for ``tokenizer``."""
    kept, dropped = {}, {}
    for kind, words in (("names", NAMES), ("places", PLACES), ("objects", OBJECTS)):
        kept[kind] = tuple(w for w in words if is_single_token(tokenizer, w))
        dropped[kind] = [w for w in words if w not in kept[kind]]
    if len(kept["names"]) < min_names or not kept["places"] or not kept["objects"]:
        raise ValueError(
            f"Tokenizer {type(tokenizer).__name__} splits too many IOI words into several tokens "
            f"(kept {len(kept['names'])} names, {len(kept['places'])} places, {len(kept['objects'])} objects; "
            f"need >= {min_names} names and >= 1 of each other kind). Extend NAMES/PLACES/OBJECTS in "
            f"repro/ioi/vocabulary.py with words this tokenizer keeps whole."
        )
    return Vocabulary(kept["names"], kept["places"], kept["objects"], dropped)
