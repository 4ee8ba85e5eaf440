<?php
// spin: never returns; PHP-FPM's request_terminate_timeout ends it.
while (true) {
}
