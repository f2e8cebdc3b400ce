"""A deterministic, varied sentence set for tests and perf suites."""

from __future__ import annotations

import random

SUBJECTS = ["The server", "A small model", "Our team", "The cat", "This pipeline", "Every request", "The old library", "A GPU"]
VERBS = ["answers", "batches", "rejects", "embeds", "reads", "forgets", "measures", "serves"]
OBJECTS = ["the queue", "sixteen sentences", "a corrupt JPEG", "the morning news", "every token", "latency spikes", "its own output"]
TAILS = ["quickly.", "without a doubt.", "on two cores.", "again and again!", "— or so they say.", "?", "in 3.5 ms."]

FIXED = [
    "",
    " ",
    "\t\n  ",
    "hello world",
    "Hello, World!",
    "Café crème brûlée à la façon de Zoë.",
    "Straße, Ærøskøbing, naïve coöperation, São Paulo.",
    "Ça va? Él está aquí. Über alles. Ångström.",
    "我们在服务器端进行文本预处理。",
    "東京は日本の首都です。",
    "한국어 문장도 하나 있습니다.",
    "Mixed 中文 and English 混合 text.",
    "Emoji time 🚀🔥 and faces 😀😅🙈",
    "👍",
    "Numbers 12345 and symbols #@!$%^&*()",
    "URL https://example.org/path?q=1&r=2 inside.",
    "Ελληνικά γράμματα και λέξεις.",
    "Русский текст для проверки.",
    "עברית מימין לשמאל",
    "العربية من اليمين إلى اليسار",
    "tabs\tand\nnewlines\r\ninside",
]


def varied_sentences(count: int = 300, seed: int = 0) -> list[str]:
    """FIXED cases, one text far past 256 tokens, then generated sentences."""
    rng = random.Random(seed)
    long_text = " ".join(f"word{i} and more context" for i in range(200))
    sentences = list(FIXED) + [long_text]
    while len(sentences) < count:
        parts = [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(TAILS)]
        if rng.random() < 0.3:
            parts.append(rng.choice(FIXED[5:]))
        if rng.random() < 0.2:
            parts = parts * rng.randint(2, 5)
        sentences.append(" ".join(parts))
    return sentences[:count]
