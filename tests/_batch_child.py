"""A batch-mode job in a child process, for the crash tests.

``python _batch_child.py STORE URL PROVIDER [JOB_MAX_COST_USD [MAX_BATCH_REQUESTS]]``:
six tickets, under a job cost budget when one is given (``-`` for none), in
batches of at most ``MAX_BATCH_REQUESTS`` requests.
"""

from __future__ import annotations

import sys

from agent_resume import ResumableRun, RunConfig


def main() -> None:
    store, url, provider = sys.argv[1:4]
    job_max_cost_usd = float(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] != "-" else None
    max_batch_requests = int(sys.argv[5]) if len(sys.argv) > 5 else None
    if provider == "openai":
        import openai

        client = openai.OpenAI(base_url=url + "/v1", api_key="test", max_retries=0)
        model = "gpt-4o-mini"
    else:
        import anthropic

        client = anthropic.Anthropic(base_url=url, api_key="test", max_retries=0)
        model = "claude-3-5-haiku-20241022"
    items = [{"id": f"t-{n}", "text": f"ticket {n}"} for n in range(6)]
    report = ResumableRun(
        RunConfig(
            job_id="batch-job", store=store, progress=False, job_max_cost_usd=job_max_cost_usd
        )
    ).run_batch(
        request=lambda t: {
            "model": model,
            "max_tokens": 50,
            "messages": [{"role": "user", "content": t["text"]}],
        },
        items=items,
        client=client,
        parse=lambda t, response: t["id"],
        poll_interval=0.05,
        max_batch_requests=max_batch_requests,
    )
    print(report.stop_reason, report.done, report.remaining)


if __name__ == "__main__":
    main()
