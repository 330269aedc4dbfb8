#!/bin/bash
# bash completion (issue 24): contrib/bash-completion/scagent loaded into a
# bash, alone and under bash-completion's own library, completes commands,
# a command's options, and --token with the labels of the running agent's
# tokens (a label with a space stays one word).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"
tb_agent_test
tb_softhsm_token card1
tb_softhsm_token "my card"
start_agent --module "$TB_SOFTHSM"
BC=$TOP_SRCDIR/contrib/bash-completion/scagent
bin=$TB_DIR/bin
mkdir -p "$bin"
ln -s "$SCAGENT" "$bin/scagent"
ln -s "$SCAGENTD" "$bin/scagentd"

# complete_line [LIB] LINE: the completions bash offers for LINE (cursor at its
# end), one a line, with the completion file (and LIB first when given) loaded
complete_line() {
	local lib=""
	[ $# -gt 1 ] && { lib=$1; shift; }
	PATH=$bin:$PATH LINE=$1 LIB=$lib BC=$BC bash --norc --noprofile -c '
		[ -n "$LIB" ] && . "$LIB"
		. "$BC"
		read -ra COMP_WORDS <<<"$LINE"
		[ "${LINE: -1}" = " " ] && COMP_WORDS+=("")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1)) COMP_LINE=$LINE COMP_POINT=${#LINE}
		spec=$(complete -p "${COMP_WORDS[0]}") || exit 3
		fn=${spec#*-F }; fn=${fn%% *}
		"$fn" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
		printf "%s\n" "${COMPREPLY[@]}"'
}

run env PATH="$bin:$PATH" bash --norc --noprofile -c ". '$BC'; complete -p scagent; complete -p scagentd"
is "complete -p scagent and scagentd after loading the file" "$RC" 0
has "... with its function" "$OUT" "complete -F _scagent scagent"

LIBS=("")
[ -f /usr/share/bash-completion/bash_completion ] && LIBS+=(/usr/share/bash-completion/bash_completion)
for lib in "${LIBS[@]}"; do
	w=${lib:+ under bash-completion}
	set -- ${lib:+"$lib"}
	is "scagent li<TAB>$w" "$(complete_line "$@" "scagent li")" "list"
	is "scagent lo<TAB>$w" "$(complete_line "$@" "scagent lo" | sort | tr '\n' ' ')" "login logout "
	has "scagent <TAB> offers tunnel$w" "$(complete_line "$@" "scagent ")" "tunnel"
	is "scagent login --token <TAB>$w: the agent's tokens" \
		"$(complete_line "$@" "scagent login --token " | sort | tr '\n' '|')" 'card1|my\ card|'
	is "scagent login --token c<TAB>$w" "$(complete_line "$@" "scagent login --token c")" "card1"
	is "scagent --socket S logout --token m<TAB>$w asks that agent" \
		"$(SCAGENT_SOCKET=/nonexistent complete_line "$@" "scagent --socket $SCAGENT_SOCKET logout --token m")" 'my\ card'
	has "scagent tunnel --max<TAB>$w" "$(complete_line "$@" "scagent tunnel --max")" "--max-connections"
	is "scagent sign --alg ecdsa-sha2<TAB>$w" "$(complete_line "$@" "scagent sign --alg ecdsa-sha2")" "ecdsa-sha256"
	is "scagent vsc <TAB>$w" "$(complete_line "$@" "scagent vsc " | tr '\n' ' ')" "create list delete "
	has "scagentd --pin<TAB>$w" "$(complete_line "$@" "scagentd --pin")" "--pinentry"
done
# No agent: --token completes to nothing, quietly.
is "no agent: --token <TAB> offers nothing" \
	"$(SCAGENT_SOCKET=$TB_DIR/none.sock complete_line "scagent login --token " 2>&1)" ""
done_testing
