# Hard-coded secrets in the diff (CWE-798): every line a change adds is scanned with detect-secrets (Yelp), whose
# plugins recognise cloud keys, tokens, private keys and high-entropy strings assigned to secret-like names.
#
# Input (facts from pilotage.policy.scans.scan_secrets):
#   secrets: [{file, line, type}]   type is the detect-secrets plugin's name, e.g. "AWS Access Key"
#   The secret itself is never put into the input (only its place and kind).
package pilotage.merge

deny contains {"msg": msg, "rule": "hard-coded-secret", "file": _file(s), "line": _line(s)} if {
	some s in input.secrets
	msg := sprintf(
		"hard-coded secret (%s) at %s: move it to an environment variable or a secret store",
		[_text(s, "type"), _where(s)],
	)
}
