"""The choose stage (``RAG_ANSWER_STAGE=choose``; ``stage.py``): the model chooses, the code copies, refusal
is calibrated.

1. ``select``: the candidate sentences are numbered; the model writes the numbers of those that answer, or 无,
   under a grammar that allows nothing else.
2. ``answerability``: general signals (the model's P(none), retrieval scores, how much of the question the
   chosen sentences hold) go into a fitted logistic model; below its threshold the service refuses.
3. The same turn goes on: the code copies the chosen sentences (依据：…) and the model writes a short answer
   from them (llama.cpp reuses the evaluated prompt).
4. ``verify``: the answer is streamed only as far as it passes the facts that can be checked (no number that
   stands in no source), and cited from the chosen sentences.
"""
