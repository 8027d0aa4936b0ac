"""Sending: handing the outbox to the channels' senders and the reconciler (`send`), rate and
quiet hours (`pacing`), the one status writer (`delivery`). The outbox rows are built in
`bot.conversations.outbox`; the rq entry points are in `bot.commands.jobs`."""
