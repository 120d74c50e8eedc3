"""Text for a synthetic speech corpus: a small probabilistic grammar over a shipped word list, and
minimal pairs that test what a spoken LM learned (ZeroSpeech sWUGGY / sBLIMP style).

Sentences follow   S -> NP VP [PP];  NP -> Det (Adj) N;  VP -> V_intr | V_tr NP
with number agreement between the subject and the verb ("the dog runs", "the dogs run").
Lexical pairs set a real word against a pseudo-word made from it by changing one vowel, so the
two sound alike but only one is in the lexicon; syntactic pairs set a sentence against the
same words with broken agreement or swapped word order. Word lists (words read one by one) give
training speech in which words stand alone, as they do in lexical pairs. Everything is seeded and deterministic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

DETERMINERS = {"sg": ["the", "a", "this", "that", "every"], "pl": ["the", "these", "those", "some", "many"]}
ADJECTIVES = ["small", "big", "old", "young", "happy", "quiet", "red", "green", "brown", "clever", "lazy", "busy",
              "cold", "warm", "dark", "bright", "tired", "gentle", "strong", "tall"]
NOUNS = [("dog", "dogs"), ("cat", "cats"), ("bird", "birds"), ("child", "children"), ("teacher", "teachers"),
         ("farmer", "farmers"), ("doctor", "doctors"), ("horse", "horses"), ("girl", "girls"), ("boy", "boys"),
         ("man", "men"), ("woman", "women"), ("friend", "friends"), ("neighbour", "neighbours"),
         ("sailor", "sailors"), ("baker", "bakers"), ("singer", "singers"), ("student", "students"),
         ("rabbit", "rabbits"), ("mother", "mothers")]
OBJECTS = ["ball", "book", "letter", "apple", "window", "garden", "river", "boat", "table", "song", "door", "road",
           "picture", "basket", "candle", "bottle", "kitchen", "market", "bridge", "blanket"]
INTRANSITIVE = [("runs", "run"), ("sleeps", "sleep"), ("sings", "sing"), ("waits", "wait"), ("smiles", "smile"),
                ("laughs", "laugh"), ("jumps", "jump"), ("walks", "walk"), ("listens", "listen"), ("works", "work")]
TRANSITIVE = [("sees", "see"), ("likes", "like"), ("finds", "find"), ("opens", "open"), ("paints", "paint"),
              ("carries", "carry"), ("watches", "watch"), ("cleans", "clean"), ("follows", "follow"),
              ("remembers", "remember")]
PREPOSITIONS = ["near", "behind", "under", "beside", "across", "inside"]
VOWELS = "aeiou"


@dataclass(frozen=True)
class MinimalPair:
    kind: str  # "lexical" or "syntactic"
    good: str
    bad: str


def lexicon() -> set[str]:
    words = {w for pair in NOUNS + INTRANSITIVE + TRANSITIVE for w in pair}
    words |= set(ADJECTIVES) | set(OBJECTS) | set(PREPOSITIONS) | {w for ws in DETERMINERS.values() for w in ws}
    return words


def _articles(words: list[str]) -> list[str]:
    """'a' -> 'an' before a vowel."""
    return ["an" if w == "a" and i + 1 < len(words) and words[i + 1][0] in VOWELS else w for i, w in enumerate(words)]


class Grammar:
    """Seeded sentence and minimal-pair generator."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)

    def _noun_phrase(self, number: str, pool: list[str] | None = None) -> list[str]:
        words = [self.rng.choice(DETERMINERS[number])]
        if self.rng.random() < 0.5:
            words.append(self.rng.choice(ADJECTIVES))
        if pool is None:
            words.append(self.rng.choice(NOUNS)[0 if number == "sg" else 1])
        else:
            words.append(self.rng.choice(pool))
        return words

    def sentence_words(self) -> tuple[list[str], int]:
        """(words, index of the verb)."""
        number = self.rng.choice(["sg", "pl"])
        subject = self._noun_phrase(number)
        verbs = TRANSITIVE if self.rng.random() < 0.5 else INTRANSITIVE
        verb = self.rng.choice(verbs)[0 if number == "sg" else 1]
        words = [*subject, verb]
        if verbs is TRANSITIVE:
            words += self._noun_phrase("sg", OBJECTS)
        if self.rng.random() < 0.3:
            words += [self.rng.choice(PREPOSITIONS), "the", self.rng.choice(OBJECTS)]
        return _articles(words), len(subject)

    def sentence(self) -> str:
        return " ".join(self.sentence_words()[0])

    def word_list(self) -> str:
        """Three to six words of the lexicon, comma-separated: words spoken on their own, as in lexical pairs."""
        return ", ".join(self.rng.sample(sorted(lexicon()), self.rng.randint(3, 6)))

    def pseudo_word(self, word: str) -> str:
        """``word`` with one vowel changed, not a word of the lexicon."""
        known = lexicon()
        positions = [i for i, c in enumerate(word) if c in VOWELS]
        for _ in range(50):
            i = self.rng.choice(positions)
            candidate = word[:i] + self.rng.choice([v for v in VOWELS if v != word[i]]) + word[i + 1:]
            if candidate not in known:
                return candidate
        return word + "o"

    def lexical_pair(self) -> MinimalPair:
        word = self.rng.choice(sorted(w for w in lexicon() if len(w) >= 4))
        return MinimalPair("lexical", word, self.pseudo_word(word))

    def syntactic_pair(self) -> MinimalPair:
        words, verb_at = self.sentence_words()
        bad = list(words)
        if self.rng.random() < 0.5:  # break subject-verb agreement
            verb = words[verb_at]
            for sg, pl in TRANSITIVE + INTRANSITIVE:
                if verb in (sg, pl):
                    bad[verb_at] = pl if verb == sg else sg
        else:  # put the verb before its subject
            bad = [words[verb_at], *words[:verb_at], *words[verb_at + 1:]]
        return MinimalPair("syntactic", " ".join(words), " ".join(bad))
