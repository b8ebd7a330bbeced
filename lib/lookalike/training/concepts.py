"""Which icons of general sets draw the same concept. Icon sets name the same drawing differently: plurals (`users`,
`user`), synonyms (`trash`, `delete`, `bin`; `gear`, `cog`, `settings`), and names that qualify a head noun
(`shopping-cart`, `cart`). A concept's key merges those, conservatively: a synonym only where the sets draw the two
names alike, a head noun only where every word before it is a plain qualifier (not itself a thing some set draws,
not a word that changes the drawing such as a direction, a sign or a pose, not a brand, not a number) and the head
does not frame another thing (`rupiah-sign`, `dog-face`).

A merge never moves a drawing across the training split: a name joins a merged concept only when its own key hashes
to the same side, so a drawing's side is the same under every version of these rules (a model trained on an earlier
training set is never evaluated on what it trained on)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable

# Name parts that say which drawing of a mark it is, not which mark: `github-dark`, `3ds-max-logo-block`,
# `square-github`, `500px-5`, `heart-outline`.
VARIANT_WORDS = frozenset({"wordmark", "icon", "dark", "light", "auto", "background", "logo", "block", "solid",
                           "alt", "plain", "original", "color", "colored", "fill", "filled", "line", "outline",
                           "outlined", "bold", "duotone", "thin", "regular", "sharp", "rounded", "round",
                           "twotone", "mini", "micro", "square", "circle"})

# Names that sets use for the same drawing (the most common name first is the key).
SYNONYMS: dict[str, str] = {
    **dict.fromkeys(("bin", "garbage", "wastebasket", "delete"), "trash"),
    **dict.fromkeys(("house",), "home"),
    **dict.fromkeys(("cog", "settings"), "gear"),
    **dict.fromkeys(("magnifier", "magnifying-glass"), "search"),
    **dict.fromkeys(("person", "account", "profile"), "user"),
    **dict.fromkeys(("envelope", "email"), "mail"),
    **dict.fromkeys(("photo", "picture"), "image"),
    **dict.fromkeys(("notification",), "bell"),
    **dict.fromkeys(("edit",), "pencil"),
    **dict.fromkeys(("trolley",), "cart"),
    **dict.fromkeys(("favorite", "love"), "heart"),
    **dict.fromkeys(("padlock",), "lock"),
    **dict.fromkeys(("world", "earth"), "globe"),
    **dict.fromkeys(("telephone", "call"), "phone"),
    **dict.fromkeys(("automobile",), "car"),
    **dict.fromkeys(("flash", "lightning", "thunder", "zap"), "bolt"),
    **dict.fromkeys(("bulb", "idea"), "lightbulb"),
    **dict.fromkeys(("location", "place", "map-marker"), "map-pin"),
    **dict.fromkeys(("save", "floppy-disk"), "floppy"),
    **dict.fromkeys(("visibility", "view"), "eye"),
    **dict.fromkeys(("directory",), "folder"),
    **dict.fromkeys(("document",), "file"),
    **dict.fromkeys(("cut",), "scissors"),
    **dict.fromkeys(("attachment", "attach"), "paperclip"),
    **dict.fromkeys(("print",), "printer"),
    **dict.fromkeys(("label",), "tag"),
    **dict.fromkeys(("present",), "gift"),
    **dict.fromkeys(("aeroplane", "plane", "flight"), "airplane"),
    **dict.fromkeys(("bike",), "bicycle"),
    **dict.fromkeys(("information",), "info"),
    **dict.fromkeys(("caution",), "warning"),
    **dict.fromkeys(("question",), "help"),
    **dict.fromkeys(("hamburger",), "menu"),
    **dict.fromkeys(("close",), "x"),
    **dict.fromkeys(("checkmark", "tick", "done"), "check"),
    **dict.fromkeys(("add",), "plus"),
    **dict.fromkeys(("remove", "subtract"), "minus"),
    **dict.fromkeys(("reload",), "refresh"),
    **dict.fromkeys(("chain",), "link"),
    **dict.fromkeys(("like",), "thumb-up"),
}

# Words that change what is drawn (a direction, a sign, a state, a pose), so a name holding one is never merged into
# its head noun; a name of one thing and such words takes the thing's synonym (`person-add` → user-plus).
MARK_WORDS = frozenset({
    "left", "right", "up", "down", "top", "bottom", "front", "back", "north", "south", "east", "west", "forward",
    "backward", "horizontal", "vertical", "diagonal", "in", "out", "inside", "outside", "on", "off", "plus", "minus",
    "x", "check", "slash", "cross", "question", "exclamation", "alert", "warning", "lock", "unlock", "open", "closed",
    "half", "empty", "full", "double", "multiple", "two", "three", "stack", "add", "remove", "delete", "edit", "new",
    "no", "not", "broken", "crossed", "dashed", "dotted", "filled", "star", "heart", "search", "settings", "cancel",
    "play", "pause", "stop", "sync", "upload", "download", "share", "link", "small", "large", "big", "wide",
    "running", "walking", "swimming", "sitting", "standing", "jumping", "flying", "dancing", "crying", "smiling",
    "sleeping", "falling", "rising", "burning", "spinning", "loading", "moving", "hanging", "folded", "rotated",
    "flipped", "tilted", "raised", "lowered", "happy", "sad", "angry", "first", "last", "next", "previous", "prev",
})

# Heads that hold or frame another thing (`rupiah-sign`, `people-error`, `weather-rain` is fine but `dog-face` is a
# dog): a name never merges into these, whatever its qualifiers.
CONTAINER_HEADS = frozenset({
    "sign", "symbol", "mark", "icon", "shape", "badge", "button", "box", "board", "screen", "face", "head", "hand",
    "room", "station", "chart", "group", "text", "code", "card", "image", "note", "select", "test", "error", "live",
    "blocked", "audio", "tag", "frame", "window", "page", "file", "folder", "document", "list", "menu", "panel",
    "bubble", "balloon", "cloud", "circle", "square", "triangle", "outline", "area", "zone", "field", "input",
})

IRREGULAR_PLURALS = {"people": "person", "men": "man", "women": "woman", "children": "child", "mice": "mouse",
                     "feet": "foot", "teeth": "tooth", "geese": "goose", "leaves": "leaf", "knives": "knife",
                     "wolves": "wolf", "shelves": "shelf", "buses": "bus", "boxes": "box", "indices": "index"}
# Words ending in s that are singular (or only plural): never cut.
SINGULAR_ENDING_IN_S = frozenset({
    "glasses", "sunglasses", "news", "gps", "bus", "virus", "campus", "plus", "minus", "cactus", "lens", "canvas",
    "compass", "grass", "glass", "chess", "dress", "address", "access", "process", "progress", "success", "status",
    "focus", "radius", "bonus", "atlas", "gas", "iris", "analysis", "axis", "tennis", "series", "species", "pants",
    "scissors", "binoculars", "headphones", "earphones", "clothes", "stairs", "billiards", "darts", "dumbbells",
    "physics", "mathematics", "diagnostics", "analytics", "settings", "css", "aws", "ios", "macos", "ms", "sms",
    "rss", "dns", "cms", "os", "us", "is", "has", "was", "yes", "this", "its", "cross", "moss", "boss", "kiss",
    "less", "fries", "dice",
})


def name_words(name: str) -> list[str]:
    """An icon name's words, the variant words and numbers or sizes at either end dropped (`camera-outline`,
    `camera-24px` → camera)."""
    words = [w for w in re.split(r"[-_\s]+", name.lower()) if w]
    while len(words) > 1 and (words[-1] in VARIANT_WORDS or re.fullmatch(r"\d+(px)?", words[-1])):
        words.pop()
    while len(words) > 1 and words[0] in VARIANT_WORDS:
        words.pop(0)
    return words


def name_key(name: str) -> str:
    """The key of an icon name as it is written (variant words dropped): what the training split hashes."""
    return "-".join(name_words(name))


def singular(word: str) -> str:
    """The singular of an English noun as icon names write it (`users` → user, `batteries` → battery)."""
    if word in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[word]
    if len(word) <= 3 or word in SINGULAR_ENDING_IN_S or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes", "zzes")):
        return word[:-2]
    return word[:-1] if word.endswith("s") else word


def canonical(key: str, vocabulary: frozenset[str] | None = None) -> str:
    """A name key with plurals made singular and synonyms replaced: the whole name's synonym (`users` → user,
    `magnifying-glass` → search), or each word's where the name is one thing and mark words (`person-add` →
    user-plus) and never inside a longer name (`view-grid` is a layout, not an eye). With a vocabulary (the words
    icon names use), a word is made singular only into a word of it (`rains` → rain, not `cyclops` → cyclop)."""
    words = [_singular_in(w, vocabulary) for w in key.split("-")]
    whole = "-".join(words)
    if whole in SYNONYMS:
        return SYNONYMS[whole]
    if sum(w not in MARK_WORDS for w in words) <= 1:
        return "-".join(SYNONYMS.get(w, w) for w in words)
    return whole


def concept_keys(names: Iterable[tuple[str, str]], split: Callable[[str], str], brands: Collection[str] = ()
                 ) -> dict[tuple[str, str], str]:
    """For each (collection, icon name), the key of the concept it draws. `split` gives a key's side of the
    training split: a name joins a merged concept only on its own key's side, otherwise it keeps its own key.
    `brands`: brand keys, which are not plain qualifiers (`apple-imac` is not any iMac)."""
    names = list(names)
    vocabulary = frozenset(w for _, name in names for w in name_words(name))
    drawn_by: dict[str, set[str]] = defaultdict(set)
    for collection, name in names:
        drawn_by[canonical(name_key(name), vocabulary)].add(collection)
    # One-word concepts drawn by two sets or more: the heads a longer name may join.
    heads = {key for key, sets in drawn_by.items() if "-" not in key and len(sets) >= 2 and len(key) > 2
             and key not in MARK_WORDS | CONTAINER_HEADS}
    # Not plain qualifiers: things some set draws (under any of their names), marks, brands.
    things = {key for key in drawn_by if "-" not in key} | {k for _, n in names if "-" not in (k := name_key(n))}
    not_plain = things | {singular(w) for w in things} | set(SYNONYMS) | MARK_WORDS | set(brands)

    def merged(key: str) -> str:
        *qualifiers, head = key.split("-")
        if qualifiers and head in heads and all(len(w) > 2 and not w.isdigit() and w not in not_plain
                                                for w in qualifiers):
            return head  # only plain qualifiers: what a thing is for (`shopping-cart`), not another thing drawn
        return key

    out = {}
    for collection, name in names:
        own = name_key(name)
        key = merged(canonical(own, vocabulary))
        out[collection, name] = key if split(key) == split(own) else own
    return out


def _singular_in(word: str, vocabulary: frozenset[str] | None) -> str:
    one = singular(word)
    return one if vocabulary is None or one in vocabulary else word
