with

customers as (

    -- still on version 1 of public_customers (uses customer_name)
    select * from {{ ref('stg_customers_v1') }}

),

final as (

    select
        customer_id,
        coalesce(customer_name, email) as display_name,
        email

    from customers

    where email is not null

)

select * from final
