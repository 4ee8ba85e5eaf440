<?php
// cpu: sum of i*i for i in 0..10000, all in the interpreter.
$sum = 0;
for ($i = 0; $i < 10000; $i++) {
    $sum += $i * $i;
}
header('Content-Type: application/json');
echo json_encode(['sum' => $sum]);
