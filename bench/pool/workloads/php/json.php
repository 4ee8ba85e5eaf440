<?php
// json: a summary of a push webhook, from the JSON body.
$push = json_decode(file_get_contents('php://input'), true);
$added = $removed = $modified = 0;
foreach ($push['commits'] as $commit) {
    $added += count($commit['added']);
    $removed += count($commit['removed']);
    $modified += count($commit['modified']);
}
$branch = $push['ref'];
if (str_starts_with($branch, 'refs/heads/')) {
    $branch = substr($branch, 11);
}
header('Content-Type: application/json');
// Keys in the order Rhai's maps print them, so every target answers the same bytes.
echo json_encode([
    'branch' => $branch,
    'commits' => count($push['commits']),
    'files' => ['added' => $added, 'modified' => $modified, 'removed' => $removed],
    'pusher' => $push['pusher']['name'],
    'repository' => $push['repository']['full_name'],
], JSON_UNESCAPED_SLASHES);
