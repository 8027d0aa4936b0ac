"""Providers: what a sender offers (`base`), the error tree every channel classifies into
(`errors`), and Twilio's REST client shared by texts, calls and WhatsApp (`twilio`). Telegram's
client is python-telegram-bot's, used only in `bot.channels.telegram.sender`."""
