<?php
// hello: a JSON object from a query parameter.
header('Content-Type: application/json');
echo json_encode(['hello' => $_GET['name'] ?? 'world']);
