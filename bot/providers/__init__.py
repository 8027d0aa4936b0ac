"""Providers: the only modules that talk to Twilio and Telegram over the network."""
