# Static security scan of the change (bandit, PyCQA): a high-severity finding refuses the merge.
#
# Input (from pilotage.policy.scans.scan_bandit over the changed service):
#   security_scan: {tool, status, issues {high, medium, low}, findings [{test_id, file, line, severity,
#                   confidence, text}]}
#   A scan that did not complete is not a deny here (the deploy policy requires a completed one). A finding whose
#   severity is not a string counts as high (fail closed).
package pilotage.merge

deny contains {"msg": msg, "rule": "security-scan", "file": _file(f), "line": _line(f)} if {
	some f in input.security_scan.findings
	_high_severity(f)
	msg := sprintf("security scan (bandit %s) at %s: %s", [_text(f, "test_id"), _where(f), _text(f, "text")])
}

_high_severity(f) if {
	is_string(f.severity)
	upper(f.severity) == "HIGH"
}

_high_severity(f) if not _severity_given(f)

_severity_given(f) if is_string(f.severity)
