#!/usr/bin/env bash
# Post a Markdown file as the pull request's one report comment: edit the comment this workflow posted before
# (found by the hidden marker on the file's first line, as `python -m pipeline check --summary` writes it),
# or create it on the first push. Uses only the built-in GITHUB_TOKEN, through the GitHub CLI (`gh api`).
#   usage: GH_TOKEN=... GITHUB_REPOSITORY=owner/repo PR_NUMBER=12 pr-comment.sh report.md
set -euo pipefail
file=${1:?usage: pr-comment.sh FILE}
: "${GITHUB_REPOSITORY:?}" "${PR_NUMBER:?}"
marker=$(head -n 1 "$file")
case "$marker" in
  "<!--"*"-->") ;;
  *) echo "pr-comment: $file does not start with a hidden marker line" >&2; exit 1 ;;
esac
author=${COMMENT_AUTHOR:-github-actions[bot]}
existing=$(gh api --paginate "repos/$GITHUB_REPOSITORY/issues/$PR_NUMBER/comments" \
  --jq ".[] | select(.user.login == \"$author\" and (.body | startswith(\"$marker\"))) | .id" | head -n 1)
if [[ -n "$existing" ]]; then
  gh api --method PATCH "repos/$GITHUB_REPOSITORY/issues/comments/$existing" -F "body=@$file" --silent
  echo "pr-comment: updated comment $existing"
else
  gh api --method POST "repos/$GITHUB_REPOSITORY/issues/$PR_NUMBER/comments" -F "body=@$file" --silent
  echo "pr-comment: created the report comment"
fi
