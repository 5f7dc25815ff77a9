"""Load-generator plans: build each raw HTTP request as an agency adapter would."""
