"""The explanatory text of the results page: why each number is what it is, and for a
missed target, by how much, why, and what would close it.  Placeholders in braces are
filled from the results (see report._note_vars)."""

NOTES: dict[str, str] = {
    "competitors": (
        "Clients compared, each configured the way a careful user would, with the same "
        "attempt budget (6 attempts) wherever it retries:\n\n"
        "- **raw requests.Session**: one session per thread, keys round-robin, no retries — "
        "the physical limit of this machine and the simulator.\n"
        "- **requests + tenacity**: the same plus `@retry(wait=wait_random_exponential("
        "multiplier=0.5, max=30), stop=stop_after_attempt(6))` on 429, 5xx and connection "
        "errors (full jitter); each attempt takes the next key.\n"
        "- **openai SDK**: the official client's built-in retries (`max_retries=5`: "
        "exponential backoff from 0.5 s with jitter, honouring `retry-after-ms`/`retry-after`), "
        "`base_url` the simulator, one client per key, rotated round-robin.\n"
        "- **LiteLLM Router**: one deployment per key (`model_list` with `api_base` the "
        "simulator's `/openai/v1` and `api_key` per deployment, `rpm` given where the scenario "
        "has a limit), `routing_strategy=\"simple-shuffle\"`, `num_retries=5`, its default "
        "cooldowns; run with `LITELLM_LOCAL_MODEL_COST_MAP=True` so it makes no network call "
        "of its own.\n"
        "- **ipfs-accelerate**: `Client` with the OpenAI plugin, configured per scenario as "
        "noted below (everything else default: `RetryPolicy()`, 6 attempts, full jitter)."),
    "overhead": (
        "Every client spends its time in the same place: building, sending and parsing HTTP "
        "on one Python process with the GIL. The pipeline adds a queue hand-off, key "
        "selection, limiter and breaker checks and stats per request; `Client.call` runs "
        "the first attempt on the caller's thread when a slot is free, so there is no "
        "thread hand-off on the fast path. The openai SDK (httpx, pydantic models) and "
        "LiteLLM (its own request/response mapping, logging and callbacks on every call) "
        "spend more CPU per request, which on 2 cores is throughput."),
    "goodput": (
        "Without a limiter, a client discovers the quota by being refused: raw loses every "
        "refused request; tenacity and the SDKs retry blindly after a jittered wait, so they "
        "draw hundreds of 429s and finish late (or give up after 6 attempts and lose the "
        "request). The pipeline paces each key to its quota before sending, so almost "
        "nothing is refused."),
    "outage": (
        "Raw loses every request that arrives during the outage. Retrying clients keep "
        "calling the dead service (every waiting request retries on its own schedule) and "
        "lose the requests whose 6 attempts all fell into the outage. The pipeline's "
        "breaker opens after a few failures; its requests wait in the queue without "
        "spending attempts, one probe goes out per open interval, and when a probe succeeds "
        "the backlog drains."),
    "priority": (
        "With c requests in flight and service time s, a late HIGH request waits for at "
        "most one slot to free plus the HIGH requests ahead of it: the p50 of 10 is about "
        "(10/(2c) + 1) s, against (200/(2c)) s for the p50 of the backlog; the expected "
        "ratio at c = 2 is 3.5/50 = 7 %."),
    "flaky": (
        "Any client that retries 5xx keeps every request here; the difference is in how "
        "many calls it makes for them (about 1/0.95 = 1.05 attempts per request is the "
        "floor) and how long the unlucky ones wait."),
    "scale": (
        "The pipeline keeps every submitted request as a queue entry with its future until "
        "it is done, so memory grows with the requests handed over at once; a thread pool's "
        "work items are smaller. CPU per request is the whole client process (HTTP, JSON, "
        "and for the pipeline its bookkeeping)."),
    "sizes": (
        "Counts are those the issue asks for; medians of {runs} runs. The scale scenario runs "
        "once per client (in a fresh process each), not 3 times, to keep the whole run "
        "under ~15 minutes on this 2-core machine; its numbers are per request over 10,000 "
        "requests."),
    # Per target: text when met, text when missed (why, and what would close it).
    "overhead.met": "Met: {overhead_ratio}x raw throughput.",
    "overhead.missed": (
        "Missed: {overhead_ratio}x raw. The per-request cost of the pipeline's bookkeeping "
        "(queue, limiter, breaker, stats, events) is CPU on the same two cores as the "
        "HTTP work; what would close it is profiling `Client.call` on this workload and "
        "cutting per-request allocations and lock round trips on the fast path."),
    "goodput.met": "Met: {goodput_ratio}x the ideal time with {goodput_429} 429s.",
    "goodput.missed": (
        "Missed: {goodput}. TODO"),
    "outage.met": "Met: {outage}.",
    "outage.missed": "Missed: {outage}. TODO",
    "priority.met": "Met: the late HIGH requests' p50 is {prio_ratio} of the backlog's.",
    "priority.missed": "Missed: {prio_ratio}. TODO",
    "flaky.met": "Met: every request succeeded; retries only for the injected 500s.",
    "flaky.missed": "Missed: {flaky}. TODO",
}
