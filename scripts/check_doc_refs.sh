#!/usr/bin/env bash
# check_doc_refs.sh: every citation of a documentation section in the tree,
# written as  docs/NAME.md "Section"  (or NAME.md "Section" inside docs/),
# must name a file of this repository and a section it has: a heading
# (# ... Section...) or a run-in bold heading (**Section...). A section is
# matched by its start, so "Hand-off" finds "## Hand-off: a busy fiber ...".
# Files outside the repository (the team's shared DESIGN.md, say) cannot be
# cited: a reader of the repository could not follow the reference.
# Prints each broken citation with where it is; exit status 1 if any.
set -uo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r hit; do
  where=${hit%%:*}
  rest=${hit#*:}
  line=${rest%%:*}
  cite=${rest#*:}
  file=${cite%% \"*}
  section=${cite#*\"}
  section=${section%\"}
  path=$file
  [[ -f $path ]] || path=docs/${file#docs/}
  [[ $where == docs/* && ! -f $path ]] && path=$(dirname "$where")/$file
  if [[ ! -f $path ]]; then
    echo "$where:$line: cites $file \"$section\": no such file in the repository"
    bad=1
    continue
  fi
  # Headings of the file, their markers stripped; a citation matches the
  # start of one.
  if ! grep -E '^#{1,6} |^\*\*' "$path" | sed -E 's/^#{1,6} //; s/^\*\*//' |
      awk -v s="$section" 'index($0, s) == 1 { found = 1 } END { exit !found }'; then
    echo "$where:$line: cites $file \"$section\": $path has no such section"
    bad=1
  fi
done < <(grep -rnoE '([A-Za-z0-9_/.-]*\.md) "[^"]+"' runtime sync io tests bench examples docs scripts cmake \
           CMakeLists.txt README.md 2>/dev/null | grep -v '^scripts/check_doc_refs.sh:')
if [[ $bad == 0 ]]; then echo "doc references: all resolve"; fi
exit $bad
