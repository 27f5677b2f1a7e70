#!/usr/bin/env bash
# Publish the report's PNGs under <commit>/ on the `ci-figures` branch, so that a pull-request comment can show
# them (a comment cannot embed files). Prints the URL folder they are served from; prints nothing and exits 0
# where the token may not push (a pull request from a fork), so the report then says no figures were published.
#   usage: publish-figures.sh COMMIT FOLDER
set -euo pipefail
commit=${1:?usage: publish-figures.sh COMMIT FOLDER}
folder=$(cd "${2:?usage: publish-figures.sh COMMIT FOLDER}" && pwd)
branch=ci-figures
work=$(mktemp -d)
trap 'git worktree remove --force "$work" >/dev/null 2>&1 || true' EXIT
if git fetch --quiet origin "$branch" 2>/dev/null; then
  git worktree add --quiet "$work" FETCH_HEAD
else
  git worktree add --quiet --detach "$work" && git -C "$work" checkout --quiet --orphan "$branch" \
    && git -C "$work" rm -rq --ignore-unmatch .
fi
mkdir -p "$work/$commit"
cp "$folder"/*.png "$work/$commit/"
git -C "$work" add "$commit"
git -C "$work" -c user.name="github-actions[bot]" -c user.email="github-actions[bot]@users.noreply.github.com" \
  commit --quiet -m "Figures of $commit" || true   # nothing new: this commit's figures are there already
for attempt in 1 2 3; do   # another run may have pushed meanwhile
  if git -C "$work" push --quiet origin "HEAD:refs/heads/$branch" 2>/dev/null; then
    echo "https://github.com/$GITHUB_REPOSITORY/raw/$branch/$commit"
    exit 0
  fi
  git -C "$work" pull --quiet --rebase origin "$branch" 2>/dev/null || break
  sleep "$attempt"
done
echo "publish-figures: could not push to $branch (a fork's read-only token?); the report shows no figures" >&2
