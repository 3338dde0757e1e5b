"""The choose stage (``RAG_ANSWER_STAGE=choose``; ``stage.py``): the model chooses, the code copies, refusal
is calibrated.

1. ``select``: the candidate sentences are numbered; the model writes the numbers of those that answer, or 无,
   under a grammar that allows nothing else.
2. The same turn goes on: the code copies the chosen sentences and the ranker's best one (依据：…) and the
   model writes a short answer from them (llama.cpp reuses the evaluated prompt); a follow-up is shown the
   clause of each that its own words point at.
3. ``refuse``: the facts that can be checked (no number that stands in no source, some word of the answer's
   own in the sentences), then ``answerability``: general signals of the written answer (retrieval scores,
   how much of the question its sentences hold, the answer's log-probability) go into a fitted logistic
   model; below its threshold the service refuses.
4. ``verify``: the answer is sent only once it passed, and cited from the sentences it was written from.
"""
