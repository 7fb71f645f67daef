# New external dependencies need a person's approval (needs_approval, not deny: the change waits).
#
# Input (built by the governance agent / `pilotage policy check --base REF`):
#   new_dependencies: [{name, version, license}]  runtime dependencies the change adds
# Data:
#   data.approved_dependencies: [string]  optional: names approved once for all (case-insensitive)
#
# The action waits until `pilotage approve ID` (the approval covers the listed messages) or `pilotage deny ID`;
# without an answer the documented default applies: deny after the approval timeout (600 s).
# The bundled demo change adds no dependency, so it never waits.
package pilotage.merge

needs_approval contains {"msg": msg, "rule": "new-dependency", "dependency": _name(dep)} if {
	some dep in input.new_dependencies
	not _preapproved(dep)
	msg := sprintf(
		"new external dependency %s %s (licence %s) needs approval",
		[_name(dep), _version(dep), _license(dep)],
	)
}

_preapproved(dep) if {
	some name in data.approved_dependencies
	lower(name) == lower(_name(dep))
}
