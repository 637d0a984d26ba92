"""A multi-turn agent per item, with stop conditions and conversation resume.

Each item is a small research task worked over several model turns. The loop
ends on a stop condition (a final answer, a turn cap, a token cap, the item's
deadline). The conversation is saved after each turn, so an item interrupted
mid-way (a crash, a kill, a deadline) resumes from its last turn next time.

    python recipes/multi_turn_agent.py --checkpoint /tmp/agent.jsonl
    python recipes/multi_turn_agent.py --crash-at 7   # dies mid-run; run again to resume
"""

import argparse

from _llm import add_llm_arguments, make_llm, reply_text

from agent_resume import MaxTokens, MaxTurns, ResumableRun, RunConfig, StopPhrase
from agent_resume.testing import Crash, SimulatedLLM


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/agent.jsonl")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--crash-at", type=int, default=None, help="kill this process at turn N")
    add_llm_arguments(parser)
    args = parser.parse_args(argv)
    llm = make_llm(args)
    if isinstance(llm, SimulatedLLM):
        llm.finish_after = 4  # the simulated model gives its final answer at turn 4
    crash = Crash(args.crash_at)

    tasks = [
        {"id": f"task-{n}", "question": f"Find three facts about topic {n}."}
        for n in range(args.tasks)
    ]

    def agent(task, ctx):
        messages = ctx.conversation or [
            {"role": "system", "content": "Work step by step. Say DONE with the final answer."},
            {"role": "user", "content": task["question"]},
        ]
        if ctx.conversation:
            ctx.logger.info("resuming %s at turn %d", ctx.item_id, len(messages) // 2)
        while (reason := ctx.should_stop()) is None:
            # Through the run: retries, rate limits, and the usage checkpointed per call.
            response = ctx.call(llm.complete, messages)
            messages.append({"role": "assistant", "content": reply_text(response)})
            ctx.save_conversation(messages)
            crash()
            messages.append({"role": "user", "content": "Continue."})
        return {"answer": messages[-2]["content"], "stopped": reason.name}

    config = RunConfig(
        job_id="research-agent",
        store=args.checkpoint,
        stop=StopPhrase("DONE") | MaxTurns(8) | MaxTokens(40_000),
        item_timeout=60,
        max_cost_usd=5.0,
        concurrency=2,
        prices=llm.prices,
    )
    report = ResumableRun(config).run(agent, tasks)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
