"""Appendix A3's semantic search: 36 sentences in six topics, questions about them, a bag-of-words baseline.

The questions were written to share few or no words with the sentences they are about, so that a
search by meaning can find the right topic where counting shared words cannot.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

TOPIC_SENTENCES: dict[str, tuple[str, ...]] = {
    "cooking": (
        "Knead the dough for ten minutes, then let it rise somewhere warm.",
        "Preheat the oven before the loaf goes in.",
        "A pinch of salt brings out the sweetness in a caramel sauce.",
        "Simmer the tomatoes slowly until the sauce thickens.",
        "Fresh basil should be added at the very end of cooking.",
        "Homemade sourdough needs a lively starter and plenty of patience.",
    ),
    "football": (
        "The striker curled the ball into the top corner.",
        "After ninety minutes the match was still goalless.",
        "The referee showed a red card for the late tackle.",
        "Their goalkeeper saved a penalty in the final minute.",
        "The club signed a young midfielder from Brazil.",
        "Fans celebrated the league title in the city centre.",
    ),
    "software": (
        "The program crashes with a null pointer exception on startup.",
        "Write unit tests before you refactor that function.",
        "The server returns an error whenever the database is unreachable.",
        "Use version control so you can undo a broken commit.",
        "This loop runs forever because the counter never increases.",
        "Upgrading the library fixed the memory leak.",
    ),
    "weather": (
        "Heavy rain is expected across the region tomorrow.",
        "Bring a coat, it is freezing outside this morning.",
        "The forecast says sunshine and clear skies all weekend.",
        "Strong winds knocked down several trees overnight.",
        "Snow is likely to fall on the hills tonight.",
        "It has been hot and humid for the whole week.",
    ),
    "money": (
        "Put a little aside every month for your retirement.",
        "The bank raised its interest rate on savings accounts.",
        "Paying off a credit card balance in full avoids interest charges.",
        "Index funds spread your investment across many companies.",
        "Check your statement for payments you do not recognise.",
        "A mortgage is usually repaid over twenty or thirty years.",
    ),
    "pets": (
        "The vet said my cat needs to lose some weight.",
        "Our dog barks every time the doorbell rings.",
        "Puppies should be vaccinated in their first few months.",
        "The kitten hides under the bed during thunderstorms.",
        "Walk your dog at least twice a day.",
        "My parrot has learned to imitate the telephone.",
    ),
}
SENTENCES: list[str] = [s for group in TOPIC_SENTENCES.values() for s in group]  # grouped by topic, in order
TOPICS: list[str] = [topic for topic, group in TOPIC_SENTENCES.items() for _ in group]  # SENTENCES[i]'s topic

QUERIES: dict[str, str] = {  # question -> the topic a good answer comes from
    "How do I bake bread at home?": "cooking",
    "Who scored the winning goal last night?": "football",
    "My application keeps crashing when it launches.": "software",
    "Will I need an umbrella tomorrow?": "weather",
    "Is it going to be windy this weekend?": "weather",
    "How can I save money for when I stop working?": "money",
    "What should I do if my card is charged twice?": "money",
    "My puppy refuses to eat its food.": "pets",
}

STOP_WORDS = frozenset(
    "a an the and or of to in on for at is it its be by my your our their i you we he she they this that "
    "do does did how what who when will can should if with from so over into out as are was has have".split())


def words(text: str) -> list[str]:
    """The lower-cased words of ``text`` (letters and apostrophes), stop words included."""
    return re.findall(r"[a-z']+", text.lower())


def content_vocabulary(texts: Sequence[str]) -> list[str]:
    """The sorted words of ``texts`` without stop words: the columns of :func:`bag_of_words`."""
    return sorted({w for text in texts for w in words(text)} - STOP_WORDS)


def bag_of_words(texts: Sequence[str], vocabulary: Sequence[str]) -> Tensor:
    """(len(texts), len(vocabulary)) counts of each vocabulary word, every row scaled to length 1.

    Words outside ``vocabulary`` (stop words among them) are not counted, so a text with none of its
    words stays a row of zeros: its cosine with anything is 0, a tie rather than an answer.
    """
    if not vocabulary:
        raise ValueError("vocabulary is empty: build it with content_vocabulary(texts) from the texts you compare")
    index = {w: i for i, w in enumerate(vocabulary)}
    counts = torch.zeros(len(texts), len(vocabulary))
    for row, text in enumerate(texts):
        for w in words(text):
            if w in index:
                counts[row, index[w]] += 1
    return F.normalize(counts, dim=-1)
