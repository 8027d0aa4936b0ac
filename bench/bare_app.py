"""The baseline: a bare Flask app answering the SMS webhook with a fixed TwiML string."""

from flask import Flask, Response

app = Flask(__name__)
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response><Message>Thank you.</Message></Response>'


@app.post("/webhooks/twilio/sms")
def sms() -> Response:
    return Response(TWIML, mimetype="application/xml")
